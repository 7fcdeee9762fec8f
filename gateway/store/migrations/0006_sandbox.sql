-- The sandbox platforms' own state (DESIGN §4.8): it stands for WhatsApp, Messenger and
-- Instagram, so it lives apart from the gateway's tables.
CREATE TABLE sandbox_users (
    uri TEXT PRIMARY KEY,
    service TEXT NOT NULL,
    native_id TEXT NOT NULL,
    name TEXT NOT NULL,
    identity_key TEXT NOT NULL,
    signing_key TEXT NOT NULL,
    -- OlmParty.pickle() under the sandbox key (data dir), never in clear.
    olm_state {{blob}} NOT NULL,
    created_at BIGINT NOT NULL
);

-- Published one-time keys; `claimed_at` set once handed out (never twice).
CREATE TABLE sandbox_one_time_keys (
    user_uri TEXT NOT NULL,
    key_id TEXT NOT NULL,
    key TEXT NOT NULL,
    signature TEXT NOT NULL,
    claimed_at BIGINT,
    PRIMARY KEY (user_uri, key_id)
);

CREATE TABLE sandbox_fallback_keys (
    user_uri TEXT PRIMARY KEY,
    key_id TEXT NOT NULL,
    key TEXT NOT NULL,
    signature TEXT NOT NULL
);

-- What each simulated user received: decrypted native webhook envelopes, sealed (AES-GCM) under
-- the sandbox key so no plaintext reaches the database file. One row per gateway message id:
-- a redelivery is recognised and not shown twice.
CREATE TABLE sandbox_inbox (
    seq {{serial}},
    user_uri TEXT NOT NULL,
    message_id TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    sealed {{blob}} NOT NULL
);

CREATE UNIQUE INDEX sandbox_inbox_message ON sandbox_inbox (user_uri, message_id);
