"""What only the PostgreSQL backend has: connect errors, migration lock, read-only sessions."""

from __future__ import annotations

import asyncio
import contextlib
import socket

import asyncpg
import pytest

from gateway.store import StoreError, Tx, open_store, redact_url
from gateway.store import postgres as pg_backend
from gateway.store.migrate import load_migrations
from tests.store.test_store import put


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_redact_url_drops_only_the_password() -> None:
    assert redact_url("postgresql://gw:s3cret@db:5433/x?sslmode=require") == (
        "postgresql://gw@db:5433/x?sslmode=require"
    )
    assert redact_url("postgresql://gw@db/x") == "postgresql://gw@db/x"
    assert redact_url("sqlite:///var/gateway.db") == "sqlite:///var/gateway.db"


async def test_unreachable_database_is_a_clear_error() -> None:
    port = closed_port()
    with pytest.raises(StoreError) as caught:
        await open_store(f"postgresql://gw:s3cret@127.0.0.1:{port}/gateway")
    message = str(caught.value)
    assert f"cannot connect to PostgreSQL at 127.0.0.1:{port}/gateway" in message
    assert "s3cret" not in message


async def test_a_silent_server_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    monkeypatch.setattr(pg_backend, "CONNECT_TIMEOUT_S", 0.2)
    try:
        with pytest.raises(StoreError, match=f"127.0.0.1:{port}/gateway"):
            await open_store(f"postgresql://gw:s3cret@127.0.0.1:{port}/gateway")
    finally:
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_replicas_starting_together_migrate_once(postgres_url: str) -> None:
    stores = await asyncio.gather(*(open_store(postgres_url, pool_size=1) for _ in range(4)))
    try:
        rows = await stores[0].fetch("SELECT version FROM schema_migrations ORDER BY version")
        assert [r["version"] for r in rows] == [m.version for m in load_migrations()]
        await put(stores[1], "k", "v")
        assert await stores[2].fetchval("SELECT value FROM kv") == "v"
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_readonly_session_refuses_statements_that_write(postgres_url: str) -> None:
    writer = await open_store(postgres_url)
    reader = await open_store(postgres_url, readonly=True)
    try:
        assert await reader.fetchval("SHOW default_transaction_read_only") == "on"
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
            await reader.fetchval("INSERT INTO kv VALUES ('k', 'v', 0) RETURNING key")
        assert await writer.fetchval("SELECT count(*) FROM kv") == 0
    finally:
        await reader.close()
        await writer.close()


async def test_readonly_open_refuses_a_newer_schema_without_migrating(postgres_url: str) -> None:
    writer = await open_store(postgres_url)
    await writer.write(
        "future",
        lambda tx: tx.execute("INSERT INTO schema_migrations VALUES (9999, 'future', 0)"),
    )
    await writer.close()
    with pytest.raises(StoreError, match="newer than this gateway"):
        await open_store(postgres_url, readonly=True)


async def test_statement_timeout_comes_from_config(postgres_url: str) -> None:
    store = await open_store(postgres_url, statement_timeout_s=0.1)
    try:
        assert await store.fetchval("SHOW statement_timeout") == "100ms"
        assert await store.fetchval("SHOW jit") == "off"
        assert await store.write("jit", lambda tx: tx.fetchval("SHOW jit")) == "off"
        with pytest.raises(asyncpg.QueryCanceledError):
            await store.fetchval("SELECT pg_sleep(2)")
    finally:
        await store.close()


async def test_a_cancelled_caller_does_not_cut_its_write_short(postgres_url: str) -> None:
    store = await open_store(postgres_url, pool_size=2)
    started = asyncio.Event()
    proceed = asyncio.Event()

    async def slow(tx: Tx) -> None:
        started.set()
        await proceed.wait()
        await tx.execute("INSERT INTO kv VALUES ('late', 'v', 0)")

    caller = asyncio.create_task(store.write("slow", slow))
    await started.wait()
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    proceed.set()
    await store.close()  # waits for writes in flight
    check = await open_store(postgres_url, pool_size=1)
    assert await check.fetchval("SELECT value FROM kv WHERE key = 'late'") == "v"
    await check.close()


async def test_a_unit_that_goes_on_after_a_failed_statement_is_rolled_back(
    postgres_url: str,
) -> None:
    store = await open_store(postgres_url, pool_size=2)
    try:
        await put(store, "a", "1")

        async def swallow(tx: Tx) -> None:
            await tx.execute("INSERT INTO kv VALUES ('half', 'x', 0)")
            # On SQLite the transaction goes on; on PostgreSQL it is aborted.
            with contextlib.suppress(asyncpg.UniqueViolationError):
                await tx.execute("INSERT INTO kv VALUES ('a', 'dup', 0)")

        results = await asyncio.gather(
            put(store, "b", "2"),
            store.write("swallow", swallow),
            put(store, "c", "3"),
            return_exceptions=True,
        )
        assert results[0] is None and results[2] is None
        assert isinstance(results[1], StoreError)
        assert "went on after a failed statement" in str(results[1])
        rows = await store.fetch("SELECT key FROM kv ORDER BY key")
        assert [r["key"] for r in rows] == ["a", "b", "c"]
    finally:
        await store.close()


async def test_the_writer_reconnects_after_losing_its_connection(postgres_url: str) -> None:
    store = await open_store(postgres_url, pool_size=2)
    try:
        await put(store, "before", "1")

        async def killed(tx: Tx) -> None:
            await tx.execute("SELECT pg_terminate_backend(pg_backend_pid())")

        with pytest.raises(StoreError, match="write failed"):
            await store.write("killed", killed)
        await put(store, "after", "2")
        rows = await store.fetch("SELECT key FROM kv ORDER BY key")
        assert [r["key"] for r in rows] == ["after", "before"]
        await store.ping()
    finally:
        await store.close()


async def test_a_pooled_read_costs_no_reset_round_trip(postgres_url: str) -> None:
    store = await open_store(postgres_url, pool_size=1)
    watcher = await asyncpg.connect(postgres_url)
    try:
        pid = await store.fetchval("SELECT pg_backend_pid()")
        assert await store.fetchval("SELECT 41 + 1") == 42
        # The last statement the pooled connection ran is the read, not a reset after it.
        last = await watcher.fetchval("SELECT query FROM pg_stat_activity WHERE pid = $1", pid)
        assert last == "SELECT 41 + 1"

        async def in_snapshot(tx: Tx) -> int:
            return int(await tx.fetchval("SELECT 7"))

        assert await store.read("snapshot", in_snapshot) == 7
        state = await watcher.fetchval("SELECT state FROM pg_stat_activity WHERE pid = $1", pid)
        assert state == "idle"  # the read's transaction ended with it
    finally:
        await watcher.close()
        await store.close()
