-- Several gateway replicas on one PostgreSQL database (README "Scaling out").

-- Which replica holds an outbox row's lease (`lease_until`): its retries and releases touch
-- only its own leases, and a restarted replica takes back what its previous life held.
ALTER TABLE relay_outbox ADD COLUMN claimed_by TEXT;

-- A sandbox user's Olm account changes with every message it decrypts or encrypts; replicas
-- save it only over the version they read (compare and set), so no update is lost.
ALTER TABLE sandbox_users ADD COLUMN olm_version BIGINT NOT NULL DEFAULT 0;

-- Rate-limit token buckets shared by the replicas (PostgreSQL only; SQLite's one process
-- keeps them in memory). Unlogged: no WAL per request; a server crash empties them, which
-- only forgives a few requests.
CREATE {{unlogged}} TABLE rate_buckets (
    key TEXT PRIMARY KEY,
    tokens DOUBLE PRECISION NOT NULL,
    at BIGINT NOT NULL,
    allowed INTEGER NOT NULL
);
