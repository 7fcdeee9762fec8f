"""PostgreSQL backend: asyncpg, group commit on one writer connection, pooled reads.

Group commit, as on SQLite: queued write units run one at a time on the writer connection,
each in its own savepoint inside one transaction, and one COMMIT (one WAL flush) covers the
group. Chosen by measurement on a local server (2 CPUs, ~250 us per round trip); 2000
concurrent units, 10 pooled connections:

| workload                                   | per-unit transactions | group commit |
|--------------------------------------------|-----------------------|--------------|
| independent one-row inserts                | ~3,000/s              | ~1,750/s     |
| each unit appends to the replica's audit   | ~180-300/s (chain     | ~520-690/s   |
| chain (what every request does)            | lock held to COMMIT)  |              |

Every request appends to its replica's audit chain in the same transaction as its effect, so
the second row is the one that counts; group commit also keeps SQLite's guarantee that a
replica's units never interleave, which the chain (one writer per chain_id) relies on.

Semantics match the SQLite backend: a unit that raises is rolled back alone (to its
savepoint) and its exception propagates, on_commit callbacks run after COMMIT, `write`
returns only once committed, and a caller cancelled while its unit runs does not cut it short.
Units must do only database work and never wait on anything but the database: the writer
waits for each. Across replicas units do run concurrently: claim shared work with
`FOR UPDATE SKIP LOCKED` (never waits; a blocked unit would hold up its whole group until
statement_timeout). After a failed statement the unit is rolled back to its savepoint once it
raises; use `ON CONFLICT` rather than catching a database error inside a unit and carrying on.

Types: asyncpg is strict about parameter types (an int for a TEXT column is an error, SQLite
accepts it); BIGINT comes back as int, BYTEA as bytes, `sum()`/`avg()` of BIGINT as Decimal.
Store booleans as INTEGER 0/1 (SQLite has no BOOLEAN; it returns 0/1), or read them with
`bool(...)`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

import asyncpg
import structlog

from gateway.store.base import Row, StoreError, WriteUnit
from gateway.store.group_commit import (
    GroupCommitWriter,
    Pending,
    UnitState,
    flush_deferred,
    has_deferred,
)
from gateway.store.migrate import check_not_newer, load_migrations, split_statements
from gateway.store.pg_session import Callback, ReplicaSession, channel_name

T = TypeVar("T")
log = structlog.get_logger(__name__)

CONNECT_TIMEOUT_S = 5.0
# Advisory lock (this id, the schema's hash) = "migrating this schema": replicas starting
# together queue up on it; gateways in other schemas of the same database do not.
MIGRATION_LOCK = 0x646D6167  # "dmag"
CONNECT_ERRORS = (OSError, TimeoutError, ValueError, asyncpg.PostgresError, asyncpg.InterfaceError)


def _where(url: str) -> str:
    parts = urlsplit(url)
    try:
        port = parts.port or 5432
    except ValueError:
        port = 5432
    database = parts.path.lstrip("/") or parts.username or "?"
    return f"{parts.hostname or 'localhost'}:{port}/{database}"


def _rowcount(status: str) -> int:
    # asyncpg returns the command tag: "INSERT 0 1", "UPDATE 3", "CREATE TABLE".
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


def _literal(text: str) -> str:
    """`text` as an SQL string literal (standard_conforming_strings is on since 9.1)."""
    if "\x00" in text:
        raise ValueError("NUL in a notification")
    return "'" + text.replace("'", "''") + "'"


class _PooledConnection(asyncpg.Connection):  # type: ignore[misc]
    """A pool connection released without asyncpg's reset query (one round trip per release:
    UNLISTEN, RESET ALL, advisory unlock, CLOSE ALL). Pooled connections run only the
    store's reads, unit-less statements and read transactions, which leave no session state
    behind (LISTEN and held locks use connections of their own, pg_session.py; the migration
    lock is released before its connection goes back); an open transaction is still
    rolled back on release."""

    def get_reset_query(self) -> str:
        return ""


class PostgresTx(UnitState):
    """A unit's handle on its pooled connection, inside its transaction."""

    __slots__ = ("_conn", "_notices")

    dialect = "postgres"

    def __init__(self, conn: asyncpg.Connection, *, in_write: bool = True) -> None:
        super().__init__(in_write=in_write)
        self._conn = conn
        self._notices: list[tuple[str, str]] = []

    async def execute(self, sql: str, *args: Any) -> int:
        return _rowcount(await self._conn.execute(sql, *args))

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        await self._conn.executemany(sql, rows)

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        row: Row | None = await self._conn.fetchrow(sql, *args)
        return row

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        rows: list[Row] = await self._conn.fetch(sql, *args)
        return rows

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self._conn.fetchval(sql, *args)

    def notify(self, topic: str, payload: str = "") -> None:
        self._notices.append((topic, payload))


_Outcome = tuple[Pending, Any, BaseException | None, "PostgresTx"]


class PostgresStore(GroupCommitWriter):
    """The scale-out Store (see module docstring)."""

    dialect = "postgres"

    def __init__(
        self,
        pool: asyncpg.Pool,
        where: str,
        *,
        connect: Callable[[], Awaitable[asyncpg.Connection]],
        group_commit_max: int,
        readonly: bool,
        tag: str = "",
    ) -> None:
        self._pool = pool
        self.where = where
        self.readonly = readonly
        self._connect = connect
        # Names this schema's notification channels (pg_session.channel_name).
        self._tag = tag
        self._session: ReplicaSession | None = None
        super().__init__(group_commit_max)
        self._writer_conn: asyncpg.Connection | None = None

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        pool_size: int = 10,
        statement_timeout_s: float = 30.0,
        group_commit_max: int = 256,
        readonly: bool = False,
    ) -> PostgresStore:
        """Connect, migrate (unless read only) and return the store for `url`."""
        where = _where(url)
        settings = {
            "application_name": "dma-gateway",
            "statement_timeout": str(int(statement_timeout_s * 1000)),
            # Short OLTP statements only: JIT compiling one (triggered by a cost estimate, e.g.
            # the outbox claim's) took ~38 ms, several times the statement itself.
            "jit": "off",
        }
        if readonly:
            settings["default_transaction_read_only"] = "on"

        def connect() -> Awaitable[asyncpg.Connection]:
            return asyncpg.connect(url, timeout=CONNECT_TIMEOUT_S, server_settings=settings)

        try:
            pool = await asyncpg.create_pool(
                url,
                min_size=1,
                max_size=pool_size,
                timeout=CONNECT_TIMEOUT_S,
                server_settings=settings,
                connection_class=_PooledConnection,
            )
        except CONNECT_ERRORS as exc:
            reason = str(exc) or type(exc).__name__
            raise StoreError(f"cannot connect to PostgreSQL at {where}: {reason}") from None
        store = cls(
            pool, where, connect=connect, group_commit_max=group_commit_max, readonly=readonly
        )
        try:
            async with pool.acquire() as conn:
                await migrate_postgres(conn, apply=not readonly)
                store._tag = (await conn.fetchval("SELECT md5(current_schema())"))[:12]
        except BaseException:
            await pool.close()
            raise
        if not readonly:
            store._start_writer("postgres-writer")
        return store

    # -- writes ---------------------------------------------------------------------------

    async def _batch_failed(self, batch: list[Pending], exc: Exception) -> None:
        log.error("store_batch_failed", size=len(batch), error=type(exc).__name__)
        await self._drop_writer_conn()  # its state is unknown: start afresh

    async def _drop_writer_conn(self) -> None:
        conn, self._writer_conn = self._writer_conn, None
        if conn is not None:
            conn.terminate()

    @staticmethod
    async def _settle_last(conn: asyncpg.Connection, outcomes: list[_Outcome], then: str) -> None:
        """Release the last unit's savepoint, then run `then` (in one round trip)."""
        try:
            await conn.execute(f"RELEASE SAVEPOINT unit; {then}")
        except asyncpg.InFailedSQLTransactionError:
            # The unit caught a failed statement and returned: roll it back, answer an error.
            await conn.execute(f"ROLLBACK TO SAVEPOINT unit; RELEASE SAVEPOINT unit; {then}")
            item, _, _, tx = outcomes[-1]
            error = StoreError(f"write unit {item.name} went on after a failed statement")
            outcomes[-1] = (item, None, error, tx)

    async def _run_batch(self, batch: list[Pending]) -> None:
        if self._writer_conn is None or self._writer_conn.is_closed():
            self._writer_conn = await self._connect()
        conn = self._writer_conn
        started = time.perf_counter()
        outcomes: list[_Outcome] = []
        # Savepoint bookkeeping rides along with the next statement: one round trip per unit
        # (the first unit's savepoint with the BEGIN).
        for item in batch:
            if item.future.done():  # cancelled while queued: never ran, never answered
                continue
            if outcomes:
                await self._settle_last(conn, outcomes, "SAVEPOINT unit")
            else:
                await conn.execute("BEGIN; SAVEPOINT unit")
            tx = PostgresTx(conn)
            try:
                result = await item.unit(tx)
            except Exception as exc:
                await conn.execute("ROLLBACK TO SAVEPOINT unit")
                outcomes.append((item, None, exc, tx))
            else:
                outcomes.append((item, result, None, tx))
        if not outcomes:
            return  # every unit was cancelled before it ran: no transaction was begun
        # NOTIFY is transactional: sent with the COMMIT, in its round trip, once per batch.
        finish = self._notify_sql(outcomes) + "COMMIT"
        if has_deferred(outcomes):
            await self._settle_last(conn, outcomes, "")
            # Raising here fails the whole batch (_write_loop drops the connection).
            await flush_deferred(PostgresTx(conn), outcomes)
            await conn.execute(finish)
        else:
            await self._settle_last(conn, outcomes, finish)
        self._resolve(outcomes, started)

    def _notify_sql(self, outcomes: list[_Outcome]) -> str:
        notices = {n for _, _, error, tx in outcomes if error is None for n in tx._notices}
        return "".join(
            f"SELECT pg_notify({_literal(channel_name(self._tag, topic))}, {_literal(payload)}); "
            for topic, payload in sorted(notices)
        )

    # -- across replicas ------------------------------------------------------------------

    def _replica_session(self) -> ReplicaSession:
        if self._session is None:

            def own_pid() -> int | None:
                conn = self._writer_conn
                return None if conn is None else conn.get_server_pid()

            self._session = ReplicaSession(self._connect, self._tag, own_pid)
        return self._session

    async def subscribe(self, topic: str, callback: Callback) -> None:
        """Call `callback(payload)` when another process commits `tx.notify(topic, payload)`.

        `callback(None)` after a lost connection: notifications may have been missed.
        """
        await self._replica_session().subscribe(topic, callback)

    async def hold_exclusive(self, name: str) -> None:
        """Hold `name` while this process lives; StoreError if another live process holds it."""
        await self._replica_session().hold(name)

    # -- reads ----------------------------------------------------------------------------

    def _open_pool(self) -> asyncpg.Pool:
        if self._closed:
            raise StoreError("store is closed")
        return self._pool

    async def read(self, name: str, unit: WriteUnit[T]) -> T:
        # REPEATABLE READ: every statement of the unit sees the same snapshot.
        async with (
            self._open_pool().acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            return await unit(PostgresTx(conn, in_write=False))

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        row: Row | None = await self._open_pool().fetchrow(sql, *args)
        return row

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        rows: list[Row] = await self._open_pool().fetch(sql, *args)
        return rows

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self._open_pool().fetchval(sql, *args)

    async def ping(self) -> None:
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                await self._open_pool().fetchval("SELECT 1")
        except CONNECT_ERRORS as exc:
            raise StoreError(f"PostgreSQL at {self.where}: {type(exc).__name__}") from None
        if self._writer_task is not None and self._writer_task.done():
            raise StoreError("writer stopped")
        if self._session is not None and self._session.lost is not None:
            raise StoreError(self._session.lost)

    async def close(self) -> None:
        if self._closed:
            return
        await self._stop_writer()  # queued writes finish before the connections go away
        if self._writer_conn is not None:
            await self._writer_conn.close(timeout=5)
        if self._session is not None:  # after the last write: the locks vouch for it
            await self._session.close()
        try:
            await asyncio.wait_for(self._pool.close(), 10)
        except TimeoutError:
            self._pool.terminate()


async def migrate_postgres(conn: asyncpg.Connection, *, apply: bool = True) -> None:
    """Apply missing migrations under an advisory lock; refuse a database newer than the code."""
    migrations = load_migrations()
    if not apply:
        exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
        if exists:
            check_not_newer(
                {r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")},
                migrations,
            )
        return
    # Session lock, held across the per-migration transactions; released in `finally`.
    lock = "($1, hashtext(current_schema()))"
    await conn.execute(f"SELECT pg_advisory_lock{lock}", MIGRATION_LOCK)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)"
        )
        applied = {r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        check_not_newer(applied, migrations)
        for migration in migrations:
            if migration.version in applied:
                continue
            try:
                async with conn.transaction():
                    for statement in split_statements(migration.for_dialect("postgres")):
                        await conn.execute(statement)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name, applied_at) "
                        "VALUES ($1, $2, $3)",
                        migration.version,
                        migration.name,
                        int(time.time() * 1000),
                    )
            except asyncpg.PostgresError as exc:
                raise StoreError(
                    f"migration {migration.version:04d}_{migration.name} failed: {exc}"
                ) from exc
            log.info("migration_applied", version=migration.version, name=migration.name)
    finally:
        await conn.execute(f"SELECT pg_advisory_unlock{lock}", MIGRATION_LOCK)


async def create_scratch_schema(url: str, prefix: str) -> str:
    """Make an empty schema `<prefix>_<random>` on the server at `url` (a benchmark's, or a
    test's); the URL that selects it (`search_path`)."""
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"CREATE SCHEMA {schema}")
    finally:
        await conn.close()
    return f"{url}{'&' if '?' in url else '?'}search_path={schema}"


async def drop_scratch_schema(url: str, schema_url: str) -> None:
    """Drop the schema `create_scratch_schema` made (named by the URL it returned)."""
    schema = schema_url.rsplit("search_path=", 1)[1]
    if not schema.replace("_", "").isalnum():
        raise ValueError("not a scratch schema")
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await conn.close()
