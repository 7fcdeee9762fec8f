-- Tamper-evident audit log (DESIGN §4.7). Each chain_id is one hash chain with one writer:
-- record hash = SHA-256(previous record's hash || canonical JSON of the record's fields).
-- Columns are the record's fields, so editing any of them breaks its hash.
CREATE TABLE audit_records (
    chain_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    v INTEGER NOT NULL,
    at BIGINT NOT NULL,
    request_id TEXT,
    actor TEXT NOT NULL,
    client_id TEXT,
    method TEXT,
    route TEXT,
    status INTEGER,
    duration_us BIGINT,
    action TEXT NOT NULL,
    subjects TEXT NOT NULL,
    pseudonym_key TEXT,
    payload_sha256 TEXT,
    payload_size BIGINT,
    attrs TEXT NOT NULL,
    hash TEXT NOT NULL,
    PRIMARY KEY (chain_id, seq)
);

CREATE INDEX audit_records_at ON audit_records (at);

-- Ed25519-signed statements "chain C had hash H at seq S".
CREATE TABLE audit_checkpoints (
    chain_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL,
    at BIGINT NOT NULL,
    key_id TEXT NOT NULL,
    signature TEXT NOT NULL,
    PRIMARY KEY (chain_id, seq)
);
