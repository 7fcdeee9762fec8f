-- Key transparency (DESIGN §4.12): an append-only RFC 9162 log of identity and signing key
-- changes. A leaf names its user by a salted hash, so the log does not list who uses interop.
CREATE TABLE kt_leaves (
    leaf_index BIGINT PRIMARY KEY,
    user_hash TEXT NOT NULL,
    data TEXT NOT NULL,
    leaf_hash {{blob}} NOT NULL,
    at BIGINT NOT NULL
);

CREATE INDEX kt_leaves_by_user ON kt_leaves (user_hash, leaf_index);

-- Leaves written in the key change's own transaction, waiting for their index: the sequencer
-- moves them into kt_leaves in id order under the kt_tree lock, so no key change ever waits on
-- another replica's append.
CREATE TABLE kt_pending (
    id {{serial}},
    user_hash TEXT NOT NULL,
    data TEXT NOT NULL,
    leaf_hash {{blob}} NOT NULL,
    at BIGINT NOT NULL
);

-- Each user's salt and the keys of its latest leaf (a claim compares against these).
CREATE TABLE kt_users (
    user_uri TEXT PRIMARY KEY,
    salt {{blob}} NOT NULL,
    version BIGINT NOT NULL,
    identity_key TEXT NOT NULL,
    signing_key TEXT NOT NULL
);

-- The tree size, one row: the sequencer locks it, so replicas never fork the log.
CREATE TABLE kt_tree (
    id INTEGER PRIMARY KEY,
    size BIGINT NOT NULL
);

INSERT INTO kt_tree (id, size) VALUES (1, 0);

-- Signed tree heads; one per size, the newest signature kept.
CREATE TABLE kt_heads (
    tree_size BIGINT PRIMARY KEY,
    root_hash TEXT NOT NULL,
    timestamp BIGINT NOT NULL,
    key_id TEXT NOT NULL,
    signature TEXT NOT NULL
);
