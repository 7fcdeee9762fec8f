-- Interop requests (Art. 7(5)): received, then approved or rejected; every step is also a row
-- of onboarding_transitions. Only a SHA-256 of the requester's status token is kept.
CREATE TABLE interop_requests (
    id TEXT PRIMARY KEY,
    organisation TEXT NOT NULL,
    contact_email TEXT NOT NULL,
    services TEXT NOT NULL,
    functionalities TEXT NOT NULL,
    jwks TEXT NOT NULL,
    webhook_url TEXT,
    status TEXT NOT NULL,
    status_token_hash TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    deadline_at BIGINT NOT NULL,
    decided_at BIGINT,
    reason TEXT,
    client_id TEXT
);
CREATE INDEX interop_requests_by_status ON interop_requests (status, deadline_at);

-- Approved third-party providers. JWKS holds public keys only; the webhook secret must stay
-- readable because the gateway signs webhooks with it (HMAC).
CREATE TABLE providers (
    client_id TEXT PRIMARY KEY,
    request_id TEXT NOT NULL UNIQUE REFERENCES interop_requests (id),
    organisation TEXT NOT NULL,
    jwks TEXT NOT NULL,
    webhook_url TEXT,
    webhook_secret TEXT,
    webhook_secret_shown_at BIGINT,
    state TEXT NOT NULL,
    services TEXT NOT NULL,
    functionalities TEXT NOT NULL,
    scopes TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Who moved a request or a provider from one state to the next, when and why.
CREATE TABLE onboarding_transitions (
    seq {{serial}},
    subject_kind TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    from_state TEXT,
    to_state TEXT NOT NULL,
    actor TEXT NOT NULL,
    reason TEXT,
    at BIGINT NOT NULL
);
CREATE INDEX onboarding_transitions_by_subject
    ON onboarding_transitions (subject_kind, subject_id, seq);

-- RFC 7523 client assertion ids seen, kept until the assertion expires, to refuse replays.
CREATE TABLE oauth_assertion_jtis (
    client_id TEXT NOT NULL,
    jti TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (client_id, jti)
);
CREATE INDEX oauth_assertion_jtis_by_expiry ON oauth_assertion_jtis (expires_at);
