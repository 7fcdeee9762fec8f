-- Gateway-wide settings and facts that outlive a process (instance id, key ids, ...).
CREATE TABLE kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
