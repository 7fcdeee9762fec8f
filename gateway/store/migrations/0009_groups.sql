-- Groups (DESIGN §4.10): a group of the hub, its members with their role, and the membership of
-- every epoch (so that a message is fanned out to the members of the epoch it was accepted in).
CREATE TABLE groups (
    uri TEXT PRIMARY KEY,
    service TEXT NOT NULL,
    name TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    client_id TEXT NOT NULL,
    client_ref TEXT NOT NULL,
    request_digest TEXT NOT NULL,
    UNIQUE (client_id, client_ref)
);

CREATE TABLE group_members (
    group_uri TEXT NOT NULL,
    member_uri TEXT NOT NULL,
    role TEXT NOT NULL,
    PRIMARY KEY (group_uri, member_uri)
);

CREATE INDEX group_members_member ON group_members (member_uri);

CREATE TABLE group_epoch_members (
    group_uri TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    member_uri TEXT NOT NULL,
    role TEXT NOT NULL,
    PRIMARY KEY (group_uri, epoch, member_uri)
);
