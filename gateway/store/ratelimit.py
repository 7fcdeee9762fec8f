"""Rate-limit token buckets shared by replicas (`rate_buckets`, PostgreSQL only); their one writer.

SQLite has one process, which keeps its buckets in memory (`buckets_in_database` says which).
A take is one statement on a pooled connection, outside the group commit: bucket state needs
no durability (the table is UNLOGGED) and would otherwise take a place in the single writer's
queue on every request. It therefore takes a `Reader` (the Store), not a `Tx`.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.store.base import Reader

# One statement: refill by the time elapsed on the database's clock (replicas' clocks may
# differ), spend a token if there is one, and say whether it did. A new bucket starts full.
_REFILLED = "LEAST($2, b.tokens + GREATEST(excluded.at - b.at, 0) * $3 / 1000.0)"
_TAKE = (
    "WITH clock AS (SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS ms) "
    "INSERT INTO rate_buckets AS b (key, tokens, at, allowed) "
    "SELECT $1, $2 - 1, clock.ms, 1 FROM clock "
    "ON CONFLICT (key) DO UPDATE SET "
    f"tokens = {_REFILLED} - CASE WHEN {_REFILLED} >= 1 THEN 1 ELSE 0 END, "
    "at = GREATEST(b.at, excluded.at), "
    f"allowed = CASE WHEN {_REFILLED} >= 1 THEN 1 ELSE 0 END "
    "RETURNING tokens, allowed"
)
_FORGET_IDLE = (
    "DELETE FROM rate_buckets "
    "WHERE at < (extract(epoch FROM clock_timestamp()) * 1000)::bigint - $1"
)


@dataclass(frozen=True)
class Take:
    """The outcome of a take: whether a token was spent, and the tokens left after it."""

    allowed: bool
    tokens: float


def buckets_in_database(db: Reader) -> bool:
    """Whether buckets live in the database (replicas share it) rather than in memory."""
    return db.dialect == "postgres"


async def take_token(db: Reader, key: str, burst: float, rate_per_s: float) -> Take:
    """Refill bucket `key` (new: full at `burst`), then spend one token if there is one."""
    row = await db.fetchrow(_TAKE, key, float(burst), float(rate_per_s))
    assert row is not None
    return Take(allowed=bool(row["allowed"]), tokens=float(row["tokens"]))


async def forget_idle_buckets(db: Reader, idle_ms: int) -> None:
    """Delete buckets untouched for `idle_ms`: full again, they hold nothing worth keeping."""
    await db.fetchval(_FORGET_IDLE, idle_ms)
