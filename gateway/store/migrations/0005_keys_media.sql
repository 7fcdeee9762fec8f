-- Key directory (DESIGN §4.4): third-party users' Olm identity, one-time and fallback keys.
-- Platform users' keys live with their platform (sandbox_ tables or the real service).
CREATE TABLE e2ee_identities (
    user_uri TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    identity_key TEXT NOT NULL,
    signing_key TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- A claimed key is deleted in the claiming transaction (secure_delete overwrites it on disk).
CREATE TABLE e2ee_one_time_keys (
    user_uri TEXT NOT NULL,
    key_id TEXT NOT NULL,
    key TEXT NOT NULL,
    signature TEXT NOT NULL,
    uploaded_at BIGINT NOT NULL,
    PRIMARY KEY (user_uri, key_id)
);

CREATE TABLE e2ee_fallback_keys (
    user_uri TEXT PRIMARY KEY,
    key_id TEXT NOT NULL,
    key TEXT NOT NULL,
    signature TEXT NOT NULL,
    uploaded_at BIGINT NOT NULL
);

-- Providers that hold a session with a user (claimed its keys or exchanged messages): they
-- are told when the user's identity key changes.
CREATE TABLE e2ee_contacts (
    user_uri TEXT NOT NULL,
    client_id TEXT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    PRIMARY KEY (user_uri, client_id)
);

-- Encrypted media: opaque ciphertext in the blob store, content-addressed by sha256; a record
-- binds it to the uploading provider and the conversation peer, who alone may fetch it.
CREATE TABLE media (
    id TEXT PRIMARY KEY,
    sha256 TEXT NOT NULL,
    size BIGINT NOT NULL,
    uploader_client_id TEXT NOT NULL,
    peer_uri TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE INDEX media_by_expiry ON media (expires_at);

CREATE INDEX media_by_sha256 ON media (sha256);
