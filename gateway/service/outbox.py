"""The delivery outbox's SQL in one place, with the few spellings that differ per dialect.

A claim takes the oldest row of each conversation that is due and not leased, and leases it.
On PostgreSQL the SELECT locks with `FOR UPDATE SKIP LOCKED`, so several replicas claim
disjoint rows without waiting on each other; SQLite has one writer, so the unit is serial.
"""

from __future__ import annotations

from typing import Any

from gateway.store import Row, Tx

_CLAIM = (
    "SELECT o.seq, o.message_id, o.service, o.attempts, m.client_id, m.client_msg_id, m.kind, "
    "m.sender, m.recipient, m.sent_at, m.accepted_at, m.payload "
    "FROM relay_outbox o JOIN relay_messages m ON m.id = o.message_id "
    "WHERE o.next_attempt_at <= $1 AND o.lease_until <= $1 "
    "AND o.seq = (SELECT MIN(h.seq) FROM relay_outbox h WHERE h.conversation = o.conversation) "
    "ORDER BY o.seq LIMIT $2"
)
CLAIM_SQL = {"sqlite": _CLAIM, "postgres": _CLAIM + " FOR UPDATE OF o SKIP LOCKED"}


async def claim(tx: Tx, dialect: str, now: int, lease_ms: int, limit: int) -> list[Row]:
    """Lease up to `limit` due conversation heads; return them with their messages."""
    rows = await tx.fetch(CLAIM_SQL[dialect], now, limit)
    for row in rows:
        await tx.execute(
            "UPDATE relay_outbox SET lease_until = $1 WHERE seq = $2", now + lease_ms, row["seq"]
        )
    return rows


async def release_all(tx: Tx) -> int:
    """Drop every lease: only safe where this process is the only worker (SQLite)."""
    return await tx.execute("UPDATE relay_outbox SET lease_until = 0 WHERE lease_until > 0")


async def retry_later(tx: Tx, seq: int, attempts: int, at: int) -> None:
    await tx.execute(
        "UPDATE relay_outbox SET attempts = $1, next_attempt_at = $2, lease_until = 0 "
        "WHERE seq = $3",
        attempts,
        at,
        seq,
    )


async def finish(tx: Tx, seq: int, message_id: str, status: str, at: int) -> None:
    """Remove the work item and drop the payload: only the envelope stays (Art. 7(8))."""
    await tx.execute("DELETE FROM relay_outbox WHERE seq = $1", seq)
    await tx.execute(
        "UPDATE relay_messages SET status = $1, finished_at = $2, payload = NULL WHERE id = $3",
        status,
        at,
        message_id,
    )


async def stats(tx_or_store: Any) -> tuple[int, int | None]:
    """(depth, created_at of the oldest row) of the outbox."""
    row = await tx_or_store.fetchrow(
        "SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM relay_outbox"
    )
    return (int(row["n"]), row["oldest"]) if row else (0, None)
