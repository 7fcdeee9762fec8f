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
# differ), spend up to $4 whole tokens of those there are, and say how many it spent. A new
# bucket starts full.
_REFILLED = "LEAST($2, b.tokens + GREATEST(excluded.at - b.at, 0) * $3 / 1000.0)"
_GRANTED = f"LEAST($4::float8, FLOOR({_REFILLED}))"
_TAKE = (
    "WITH clock AS (SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS ms) "
    "INSERT INTO rate_buckets AS b (key, tokens, at, allowed) "
    "SELECT $1, $2 - LEAST($4::float8, FLOOR($2)), clock.ms, LEAST($4::float8, FLOOR($2)) "
    "FROM clock "
    "ON CONFLICT (key) DO UPDATE SET "
    f"tokens = {_REFILLED} - {_GRANTED}, "
    "at = GREATEST(b.at, excluded.at), "
    f"allowed = {_GRANTED}::int "
    "RETURNING tokens, allowed"
)
_FORGET_IDLE = (
    "DELETE FROM rate_buckets "
    "WHERE at < (extract(epoch FROM clock_timestamp()) * 1000)::bigint - $1"
)


@dataclass(frozen=True)
class Take:
    """The outcome of a take: how many tokens were spent, and the tokens left after it."""

    granted: int
    tokens: float

    @property
    def allowed(self) -> bool:
        return self.granted > 0


def buckets_in_database(db: Reader) -> bool:
    """Whether buckets live in the database (replicas share it) rather than in memory."""
    return db.dialect == "postgres"


async def take_token(
    db: Reader, key: str, burst: float, rate_per_s: float, *, up_to: int = 1
) -> Take:
    """Refill bucket `key` (new: full at `burst`), then spend up to `up_to` whole tokens, as
    many as there are."""
    row = await db.fetchrow(_TAKE, key, float(burst), float(rate_per_s), float(up_to))
    assert row is not None
    return Take(granted=int(row["allowed"]), tokens=float(row["tokens"]))


async def forget_idle_buckets(db: Reader, idle_ms: int) -> None:
    """Delete buckets untouched for `idle_ms`: full again, they hold nothing worth keeping."""
    await db.fetchval(_FORGET_IDLE, idle_ms)
