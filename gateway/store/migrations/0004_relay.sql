-- Message relay (DESIGN §4.5-4.6): envelopes, the delivery outbox, dead letters, consent and
-- the per-provider event queues. Payloads (ciphertext or translated native objects) live only
-- until delivered; the envelope stays for idempotency and accounting.

-- Per-user, per-provider consent (Art. 7(7)); client_id '*' means every provider.
CREATE TABLE consents (
    user_uri TEXT NOT NULL,
    client_id TEXT NOT NULL,
    granted_at BIGINT NOT NULL,
    PRIMARY KEY (user_uri, client_id)
);

-- One row per accepted message, receipt or typing signal, in either direction.
-- (client_id, client_msg_id) is the idempotency key of a provider's submission; `digest` is the
-- SHA-256 of its canonical body so a retry with a different body is told apart (409).
CREATE TABLE relay_messages (
    id TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    client_msg_id TEXT NOT NULL,
    digest TEXT NOT NULL,
    direction TEXT NOT NULL,
    kind TEXT NOT NULL,
    service TEXT NOT NULL,
    sender TEXT NOT NULL,
    recipient TEXT NOT NULL,
    sent_at BIGINT NOT NULL,
    accepted_at BIGINT NOT NULL,
    size BIGINT NOT NULL,
    status TEXT NOT NULL,
    finished_at BIGINT,
    payload TEXT
);

CREATE UNIQUE INDEX relay_messages_idempotency ON relay_messages (client_id, client_msg_id);

-- Work for the delivery workers. `conversation` keeps order: only the oldest row of a
-- conversation is claimable. `lease_until` is the claim (a crashed worker's claim expires).
CREATE TABLE relay_outbox (
    seq {{serial}},
    message_id TEXT NOT NULL,
    conversation TEXT NOT NULL,
    service TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    lease_until BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE INDEX relay_outbox_conversation ON relay_outbox (conversation, seq);
CREATE INDEX relay_outbox_due ON relay_outbox (next_attempt_at);

-- Messages given up on, for operators; the provider gets a delivery_failed event.
CREATE TABLE relay_dead_letters (
    message_id TEXT PRIMARY KEY,
    service TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    reason TEXT NOT NULL,
    failed_at BIGINT NOT NULL
);

-- Per-provider event queues (DESIGN §4.6); an event leaves once acked or pushed with a 2xx.
CREATE TABLE provider_events (
    seq {{serial}},
    client_id TEXT NOT NULL,
    type TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE INDEX provider_events_client ON provider_events (client_id, seq);

CREATE TABLE provider_event_cursors (
    client_id TEXT PRIMARY KEY,
    acked BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- The `http` platform's id maps: the native ids the real services know third-party users and
-- relayed messages by, so their webhooks (replies, statuses) find the way back.
CREATE TABLE platform_user_ids (
    service TEXT NOT NULL,
    native_id TEXT NOT NULL,
    uri TEXT NOT NULL,
    PRIMARY KEY (service, native_id)
);

CREATE TABLE platform_message_ids (
    service TEXT NOT NULL,
    native_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (service, native_id)
);
