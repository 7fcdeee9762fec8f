-- Group fan-out (DESIGN §4.10): a group item is one relay message with one outbox row per
-- platform member (`member`; NULL for a 1:1 item, whose recipient is the message's own), and
-- each Megolm session is bound to the epoch it was shared in.
ALTER TABLE relay_outbox ADD COLUMN member TEXT;

CREATE INDEX relay_outbox_message ON relay_outbox (message_id);

CREATE TABLE group_sessions (
    group_uri TEXT NOT NULL,
    session_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (group_uri, session_id)
);
