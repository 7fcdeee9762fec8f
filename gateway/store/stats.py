"""Reads of database state for the gauges (outbox, keys, audit, requests): no writes.

Each read reaches across other domains' tables, read only; the event backlog is read by
`gateway.store.events.backlog_per_provider`.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.store.base import Reader

_TABLES = {
    "sqlite": "SELECT name FROM sqlite_master WHERE type = 'table'",
    "postgres": (
        "SELECT table_name AS name FROM information_schema.tables"
        " WHERE table_schema = current_schema()"
    ),
}


@dataclass(frozen=True)
class QueueDepth:
    """How many rows wait and when the oldest was created (None when empty)."""

    depth: int
    oldest_at: int | None


@dataclass(frozen=True)
class OpenRequests:
    """Interoperability requests awaiting a decision, and how many of them are overdue."""

    open: int
    overdue: int


async def existing_tables(db: Reader) -> set[str]:
    """Names of the tables in the store's schema."""
    return {row["name"] for row in await db.fetch(_TABLES[db.dialect])}


async def outbox_depth(db: Reader) -> QueueDepth:
    """The relay outbox's depth and its oldest row's creation time."""
    row = await db.fetchrow(
        "SELECT COUNT(*) AS depth, MIN(created_at) AS oldest FROM relay_outbox"
    )
    assert row is not None
    oldest = row["oldest"]
    return QueueDepth(depth=int(row["depth"]), oldest_at=None if oldest is None else int(oldest))


async def one_time_keys_low_water(db: Reader) -> dict[str, int]:
    """Per provider, the fewest one-time keys left to any of its users."""
    # Claimed keys are deleted, so what is left per user is what can still be claimed.
    rows = await db.fetch(
        "SELECT client_id, MIN(remaining) AS low FROM ("
        " SELECT i.client_id AS client_id, COUNT(k.key_id) AS remaining"
        " FROM e2ee_identities i LEFT JOIN e2ee_one_time_keys k ON k.user_uri = i.user_uri"
        " GROUP BY i.client_id, i.user_uri) per_user GROUP BY client_id"
    )
    return {row["client_id"]: int(row["low"]) for row in rows}


async def newest_checkpoint_at(db: Reader, chain_id: str) -> int | None:
    """When the audit chain `chain_id` was last checkpointed (None: never)."""
    value = await db.fetchval(
        "SELECT MAX(at) FROM audit_checkpoints WHERE chain_id = $1", chain_id
    )
    return None if value is None else int(value)


async def open_interop_requests(db: Reader, now_ms: int) -> OpenRequests:
    """Requests still `received`, and those of them past their deadline at `now_ms`."""
    row = await db.fetchrow(
        "SELECT COUNT(*) AS open,"
        " COALESCE(SUM(CASE WHEN deadline_at < $1 THEN 1 ELSE 0 END), 0) AS overdue"
        " FROM interop_requests WHERE status = 'received'",
        now_ms,
    )
    assert row is not None
    return OpenRequests(open=int(row["open"]), overdue=int(row["overdue"]))
