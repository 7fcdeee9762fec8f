"""SQLite backend: WAL, one writer with group commit, statements run inline on the loop.

Group commit: write units queue up; the writer runs every queued unit inside one transaction
(each in its own savepoint, so one failure rolls back alone) and commits once, so one fsync
covers the whole group. Only the COMMIT, the step that waits on the disk, leaves the event loop.
Statements themselves are short indexed operations on pages in memory.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

import structlog

from gateway.store.base import Row, StoreError, WriteUnit
from gateway.store.group_commit import GroupCommitWriter, Pending, UnitState, flush_deferred
from gateway.store.migrate import check_not_newer, load_migrations, split_statements

T = TypeVar("T")
log = structlog.get_logger(__name__)

_PLACEHOLDER = re.compile(r"\$(\d+)")


@lru_cache(maxsize=1024)
def to_sqlite(sql: str) -> str:
    """Rewrite PostgreSQL `$n` placeholders to SQLite's numbered `?n`."""
    return _PLACEHOLDER.sub(r"?\1", sql)


class SqliteTx(UnitState):
    """A unit's handle on the writer connection (or a reader's, read only)."""

    __slots__ = ("_conn",)

    dialect = "sqlite"

    def __init__(self, conn: sqlite3.Connection, *, in_write: bool = True) -> None:
        super().__init__(in_write=in_write)
        self._conn = conn

    async def execute(self, sql: str, *args: Any) -> int:
        return self._conn.execute(to_sqlite(sql), args).rowcount

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._conn.executemany(to_sqlite(sql), rows)

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        row: Row | None = self._conn.execute(to_sqlite(sql), args).fetchone()
        return row

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return self._conn.execute(to_sqlite(sql), args).fetchall()

    async def fetchval(self, sql: str, *args: Any) -> Any:
        row = self._conn.execute(to_sqlite(sql), args).fetchone()
        return None if row is None else row[0]

    def notify(self, topic: str, payload: str = "") -> None:
        pass  # one process: nobody else to tell


def _connect(path: str, *, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        conn = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
        )
    else:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout = 10000")
    if not readonly:
        conn.execute("PRAGMA journal_mode = WAL")
        # FULL: a COMMIT returns only once the WAL is on disk, so a 2xx means durable.
        conn.execute("PRAGMA synchronous = FULL")
        # Art. 7(8): what is deleted (delivered payloads, expired keys) is overwritten on disk.
        conn.execute("PRAGMA secure_delete = ON")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


class SqliteStore(GroupCommitWriter):
    """The embedded Store (see module docstring)."""

    dialect = "sqlite"

    def __init__(self, path: str, *, group_commit_max: int = 256, readonly: bool = False) -> None:
        super().__init__(group_commit_max)
        self.path = path
        self.readonly = readonly
        self._writer_conn: sqlite3.Connection | None = None
        self._reader = _connect(path, readonly=True) if readonly else None
        self._disk = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-commit")

    @classmethod
    async def open(
        cls, path: str, *, group_commit_max: int = 256, readonly: bool = False
    ) -> SqliteStore:
        """Open (creating and migrating unless read only) the database at `path`."""
        if readonly and not await asyncio.to_thread(Path(path).exists):
            raise StoreError(f"no database at {path}")
        if not readonly:
            await asyncio.to_thread(Path(path).parent.mkdir, parents=True, exist_ok=True)
        try:
            store = cls(path, group_commit_max=group_commit_max, readonly=readonly)
            if not readonly:
                store._writer_conn = _connect(path)
                migrate_sqlite(store._writer_conn)
                store._reader = _connect(path)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open SQLite database {path}: {exc}") from exc
        if not readonly:
            store._start_writer("sqlite-writer")
        return store

    # -- writes ---------------------------------------------------------------------------

    async def _batch_failed(self, batch: list[Pending], exc: Exception) -> None:
        log.error("store_batch_failed", size=len(batch), exc_info=exc)
        conn = self._writer_conn
        if conn is not None and conn.in_transaction:
            conn.execute("ROLLBACK")

    async def _run_batch(self, batch: list[Pending]) -> None:
        conn = self._writer_conn
        assert conn is not None
        started = time.perf_counter()
        outcomes: list[tuple[Pending, Any, BaseException | None, SqliteTx]] = []
        conn.execute("BEGIN IMMEDIATE")
        for item in batch:
            if item.future.done():  # cancelled while queued: never ran, never answered
                continue
            tx = SqliteTx(conn)
            conn.execute("SAVEPOINT unit")
            try:
                result = await item.unit(tx)
            except Exception as exc:
                conn.execute("ROLLBACK TO unit")
                conn.execute("RELEASE unit")
                outcomes.append((item, None, exc, tx))
            else:
                conn.execute("RELEASE unit")
                outcomes.append((item, result, None, tx))
        # Raising here fails the whole batch (_write_loop rolls it back).
        await flush_deferred(SqliteTx(conn), outcomes)
        try:
            await asyncio.get_running_loop().run_in_executor(self._disk, conn.execute, "COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            log.error("store_commit_failed", error=str(exc), size=len(outcomes))
            for item, _, _, _ in outcomes:
                if not item.future.done():
                    item.future.set_exception(StoreError("commit failed"))
            return
        self._resolve(outcomes, started)

    # -- reads ----------------------------------------------------------------------------

    def _reader_conn(self) -> sqlite3.Connection:
        if self._reader is None or self._closed:
            raise StoreError("store is closed")
        return self._reader

    async def read(self, name: str, unit: WriteUnit[T]) -> T:
        conn = self._reader_conn()
        conn.execute("BEGIN")
        try:
            return await unit(SqliteTx(conn, in_write=False))
        finally:
            conn.execute("ROLLBACK")

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        row: Row | None = self._reader_conn().execute(to_sqlite(sql), args).fetchone()
        return row

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return self._reader_conn().execute(to_sqlite(sql), args).fetchall()

    async def fetchval(self, sql: str, *args: Any) -> Any:
        row = self._reader_conn().execute(to_sqlite(sql), args).fetchone()
        return None if row is None else row[0]

    async def ping(self) -> None:
        try:
            self._reader_conn().execute("SELECT 1").fetchone()
        except sqlite3.Error as exc:
            raise StoreError(str(exc)) from exc
        if self._writer_task is not None and self._writer_task.done():
            raise StoreError("writer stopped")

    async def subscribe(self, topic: str, callback: Callable[[str | None], None]) -> None:
        pass  # one process: no other commits to hear of

    async def hold_exclusive(self, name: str) -> None:
        pass  # one process per database file (SQLite's own lock keeps out a second writer)

    async def close(self) -> None:
        if self._closed:
            return
        await self._stop_writer()  # queued writes finish before the connection goes away
        self._disk.shutdown(wait=True)
        for conn in (self._reader, self._writer_conn):
            if conn is not None:
                conn.close()


def migrate_sqlite(conn: sqlite3.Connection) -> None:
    """Apply missing migrations; refuse a database newer than this code."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)"
    )
    applied = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
    migrations = load_migrations()
    check_not_newer(applied, migrations)
    for migration in migrations:
        if migration.version in applied:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in split_statements(migration.for_dialect("sqlite")):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, int(time.time() * 1000)),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        log.info("migration_applied", version=migration.version, name=migration.name)
