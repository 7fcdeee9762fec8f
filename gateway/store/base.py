"""The Store protocol: group-committed write units and plain reads, the same for every backend.

SQL is written once, in PostgreSQL's `$1` placeholder style; the SQLite backend rewrites it.
Times are integer milliseconds since the epoch, JSON is TEXT, bytes are `{{blob}}` columns.

Every SQL statement of the gateway lives in a per-domain module of this package
(`gateway/store/outbox.py`, `keys.py`, `consent.py`, ...), as plain async functions named after
what they do, taking a `Tx` (inside a write unit) or a `Reader` (a Store or a Tx, for reads):

    async def claim_one_time_key(tx: Tx, user: str) -> OneTimeKey | None:
        row = await tx.fetchrow(CLAIM[tx.dialect], user)

Services call these verbs and never see SQL or a dialect; where the dialects differ the module
keeps one statement per dialect (`{"sqlite": ..., "postgres": ...}`) indexed by `tx.dialect`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")

Row = Mapping[str, Any]

# SQLSTATE lock_not_available: a `FOR UPDATE NOWAIT` met another transaction's row lock.
LOCK_NOT_AVAILABLE = "55P03"


def is_lock_not_available(exc: BaseException) -> bool:
    """Whether `exc` is PostgreSQL refusing to wait for a row lock (NOWAIT): try again soon."""
    return getattr(exc, "sqlstate", None) == LOCK_NOT_AVAILABLE


class StoreError(Exception):
    """Storage cannot be opened or used (unreachable, schema too new, ...)."""


class Reader(Protocol):
    """What a read needs: a Store (outside a unit) or a Tx (inside one)."""

    dialect: str

    async def fetchrow(self, sql: str, *args: Any) -> Row | None: ...

    async def fetch(self, sql: str, *args: Any) -> list[Row]: ...

    async def fetchval(self, sql: str, *args: Any) -> Any: ...


class Tx(Protocol):
    """One write unit's view of the current transaction."""

    dialect: str

    async def execute(self, sql: str, *args: Any) -> int:
        """Run a statement; return the number of rows it changed."""
        ...

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run a statement once per row of arguments."""
        ...

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        """Run a query; return its first row or None."""
        ...

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        """Run a query; return all its rows."""
        ...

    async def fetchval(self, sql: str, *args: Any) -> Any:
        """Run a query; return the first column of its first row, or None."""
        ...

    def on_commit(self, callback: Callable[[], None]) -> None:
        """Call `callback` once this unit is durable (never if it is rolled back)."""
        ...

    def defer(self, flush: BatchFlush, item: Any) -> None:
        """Hand `item` to `flush`, run once per group-commit batch with the items of all its
        units, in unit order, after the last unit and before the COMMIT.

        Items of a unit rolled back to its savepoint are dropped with it. For rows that every
        unit appends to one sequence (the audit chain): one head read and one multi-row insert
        per batch instead of both per unit. A flush that raises fails the whole batch: no unit
        of it commits. Outside a write (in `Store.read`) there is no batch: it raises.
        """
        ...

    def notify(self, topic: str, payload: str = "") -> None:
        """Tell other processes on this database, once this unit commits (see Store.subscribe).

        This process is not told: wake local waiters with `on_commit`. A no-op on SQLite, which
        has one process. Delivery is best effort (a listener may be reconnecting): listeners
        also poll.
        """
        ...


WriteUnit = Callable[[Tx], Awaitable[T]]
# Run by the writer once per batch (Tx.defer): the batch's transaction and the deferred items.
BatchFlush = Callable[[Tx, list[Any]], Awaitable[None]]


class Store(Protocol):
    """Storage: durable group-committed writes, reads, health, lifecycle."""

    dialect: str

    async def write(self, name: str, unit: WriteUnit[T]) -> T:
        """Run `unit` in a transaction shared with other concurrent writes; return once durable.

        A unit that raises is rolled back alone (savepoint); the others commit. Units must do
        only database work: while one runs, the writer waits for it.
        """
        ...

    async def read(self, name: str, unit: WriteUnit[T]) -> T:
        """Run `unit` against one consistent snapshot, read only."""
        ...

    async def fetchrow(self, sql: str, *args: Any) -> Row | None: ...

    async def fetch(self, sql: str, *args: Any) -> list[Row]: ...

    async def fetchval(self, sql: str, *args: Any) -> Any: ...

    async def ping(self) -> None:
        """Raise StoreError unless storage answers."""
        ...

    async def subscribe(self, topic: str, callback: Callable[[str | None], None]) -> None:
        """Call `callback(payload)` when another process commits a `notify(topic, payload)`.

        `callback(None)` means notifications may have been missed (a reconnect): look again.
        """
        ...

    async def hold_exclusive(self, name: str) -> None:
        """Hold `name` while this process lives; StoreError if another live process holds it.

        Replicas on one PostgreSQL database use it for what must have one live owner (a
        replica id, an audit chain). SQLite has one process: a no-op.
        """
        ...

    async def close(self) -> None: ...


def redact_url(url: str) -> str:
    """`url` without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return parts._replace(netloc=f"{user}@{netloc}").geturl()
