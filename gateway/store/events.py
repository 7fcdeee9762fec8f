"""Provider event queues (DESIGN §4.6): `provider_events`, `provider_event_seqs`,
`provider_event_cursors`; this module is their one writer.

Each provider's events are numbered 1, 2, 3... on their own (`event_seq`, migration 0008), so
a provider learns nothing of the others' traffic from its ids. Taking the next number locks the
provider's counter row until the unit's transaction commits: appends for one provider (from any
replica) commit in number order, so a reader never sees number n+1 before n.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from gateway.store.base import Reader, Tx

_ADVANCE_SEQ = (
    "INSERT INTO provider_event_seqs (client_id, last) VALUES ($1, $2) "
    "ON CONFLICT (client_id) DO UPDATE SET last = provider_event_seqs.last + $2 "
    "RETURNING last"
)
_APPEND = (
    "INSERT INTO provider_events (client_id, event_seq, type, body, created_at) "
    "VALUES ($1, $2, $3, $4, $5)"
)
_ACK_CURSOR = (
    "INSERT INTO provider_event_cursors (client_id, acked, updated_at) "
    "VALUES ($1, $2, $3) ON CONFLICT (client_id) DO UPDATE SET "
    "acked = CASE WHEN excluded.acked > provider_event_cursors.acked "
    "THEN excluded.acked ELSE provider_event_cursors.acked END, "
    "updated_at = excluded.updated_at"
)


@dataclass(frozen=True)
class StoredEvent:
    """An event as queued: its number in its provider's sequence and its JSON body."""

    seq: int
    body: str


class NewEvent(NamedTuple):
    """An event to queue: its type, its JSON body and when it was made."""

    type: str
    body: str
    at: int


async def append_events(tx: Tx, client_id: str, events: Sequence[NewEvent]) -> int:
    """Queue `events` for `client_id`, numbered on in order (one counter update, one multi-row
    insert); return the number of the last (0 when `events` is empty)."""
    if not events:
        return 0
    last = int(await tx.fetchval(_ADVANCE_SEQ, client_id, len(events)))
    first = last - len(events) + 1
    await tx.executemany(
        _APPEND, [(client_id, first + i, e.type, e.body, e.at) for i, e in enumerate(events)]
    )
    return last


async def events_after(db: Reader, client_id: str, after: int, limit: int) -> list[StoredEvent]:
    """The provider's queued events numbered above `after`, oldest first, at most `limit`."""
    rows = await db.fetch(
        "SELECT event_seq, body FROM provider_events WHERE client_id = $1 AND event_seq > $2 "
        "ORDER BY event_seq LIMIT $3",
        client_id,
        after,
        limit,
    )
    return [StoredEvent(int(row["event_seq"]), row["body"]) for row in rows]


async def acked_cursor(db: Reader, client_id: str) -> int:
    """The provider's acknowledged cursor (0 before its first ack)."""
    value = await db.fetchval(
        "SELECT acked FROM provider_event_cursors WHERE client_id = $1", client_id
    )
    return int(value or 0)


async def last_seq(db: Reader, client_id: str) -> int:
    """The number of the provider's newest event ever queued (0: none yet)."""
    value = await db.fetchval(
        "SELECT last FROM provider_event_seqs WHERE client_id = $1", client_id
    )
    return int(value or 0)


async def ack_events(tx: Tx, client_id: str, cursor: int, at: int) -> bool:
    """Drop the provider's events up to `cursor` and keep it as its cursor (never moved back).

    False, changing nothing, when `cursor` is past the newest number the provider was given.
    """
    if cursor > await last_seq(tx, client_id):
        return False
    await tx.execute(
        "DELETE FROM provider_events WHERE client_id = $1 AND event_seq <= $2",
        client_id,
        cursor,
    )
    await tx.execute(_ACK_CURSOR, client_id, cursor, at)
    return True


async def count_backlog(db: Reader, client_id: str) -> int:
    """How many events wait for this provider."""
    value = await db.fetchval(
        "SELECT COUNT(*) FROM provider_events WHERE client_id = $1", client_id
    )
    return int(value or 0)


async def backlog_per_provider(db: Reader) -> dict[str, int]:
    """Waiting events per provider with any (acknowledged events are deleted)."""
    rows = await db.fetch(
        "SELECT client_id, COUNT(*) AS backlog FROM provider_events GROUP BY client_id"
    )
    return {row["client_id"]: int(row["backlog"]) for row in rows}


async def providers_with_events(db: Reader) -> list[str]:
    """Providers with events waiting."""
    rows = await db.fetch("SELECT DISTINCT client_id FROM provider_events")
    return [row["client_id"] for row in rows]
