-- Per-provider event sequences (issue #16): a provider's event ids and cursors count 1, 2, 3...
-- of its own, so their gaps no longer reveal other providers' traffic.

-- The event's number within its provider's queue; `seq` stays the row's storage identity.
-- Existing rows keep their number (event_seq = seq), so cursors held by providers stay valid.
ALTER TABLE provider_events ADD COLUMN event_seq BIGINT;

UPDATE provider_events SET event_seq = seq;

DROP INDEX provider_events_client;

CREATE UNIQUE INDEX provider_events_client_seq ON provider_events (client_id, event_seq);

-- The last number handed out per provider. Appends take it with an upsert: on PostgreSQL the
-- row lock orders concurrent appenders of one provider (replicas included), so each number
-- commits in order and none is skipped; other providers never meet that lock.
CREATE TABLE provider_event_seqs (
    client_id TEXT PRIMARY KEY,
    last BIGINT NOT NULL
);

-- Continue past every number a provider has seen (queued events and its acked cursor).
INSERT INTO provider_event_seqs (client_id, last)
SELECT client_id, MAX(last) FROM (
    SELECT client_id, MAX(seq) AS last FROM provider_events GROUP BY client_id
    UNION ALL
    SELECT client_id, acked AS last FROM provider_event_cursors
) seen GROUP BY client_id;
