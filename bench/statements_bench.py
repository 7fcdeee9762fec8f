"""SQL statements and write units per message, by store function, on either backend.

Runs the gateway in this process (embedded sandbox platforms, the bench's configuration),
onboards a provider, sends N messages (C at a time) with the bench's bodies (WhatsApp
ciphertext and Instagram plaintext, alternating), waits until each is delivered and its
status has reached the provider, and counts every statement the store ran on the way, by the
store function that ran it. Unlike a throughput figure this one does not depend on the
machine's load.

    python bench/statements_bench.py [--database postgresql://...] [--messages 2000]
        [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import logging
import os
import sys
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.app import create_app
from gateway.bench import observe, procs, provision, wrk
from gateway.bench.runner import BENCH_ENV
from gateway.config import load_config
from gateway.store import group_commit, postgres, sqlite

STATEMENTS: collections.Counter[str] = collections.Counter()
UNITS: collections.Counter[str] = collections.Counter()
_OWN = {"gateway.store.sqlite", "gateway.store.postgres", "gateway.store.group_commit"}


def _caller() -> str:
    """The first store module function up the stack (else the first gateway function)."""
    frame = sys._getframe(2)
    fallback = None
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module.startswith("gateway.store.") and module not in _OWN:
            return f"{module.removeprefix('gateway.store.')}.{frame.f_code.co_name}"
        if fallback is None and module.startswith("gateway.") and module not in _OWN:
            fallback = f"{module.removeprefix('gateway.')}.{frame.f_code.co_name}"
        frame = frame.f_back
    return fallback or "?"


def _counted(method: Callable[..., Any]) -> Callable[..., Any]:
    async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        # In a write unit (the writer's connection, one statement at a time) or a read.
        where = "write" if getattr(self, "_deferred", None) is not None else "read "
        STATEMENTS[f"{where} {_caller()}"] += 1
        return await method(self, *args, **kwargs)

    return wrapper


def instrument() -> None:
    for cls in (sqlite.SqliteTx, sqlite.SqliteStore, postgres.PostgresTx, postgres.PostgresStore):
        for name in ("execute", "executemany", "fetchrow", "fetch", "fetchval"):
            if name in vars(cls):
                setattr(cls, name, _counted(getattr(cls, name)))
    write = group_commit.GroupCommitWriter.write

    async def counted_write(self: Any, name: str, unit: Any) -> Any:
        UNITS[name] += 1
        return await write(self, name, unit)

    group_commit.GroupCommitWriter.write = counted_write  # type: ignore[method-assign]


async def run(database: str | None, messages: int, concurrency: int) -> None:
    instrument()
    with tempfile.TemporaryDirectory() as tmp:
        admin_token = uuid.uuid4().hex
        port = procs.free_port()  # the public URL (token audience) names the port
        env = {**BENCH_ENV, "GATEWAY_DATA_DIR": tmp, "GATEWAY_ADMIN_TOKEN": admin_token,
               "GATEWAY_PORT": str(port)}  # fmt: skip
        env = {k: v for k, v in env.items() if k != "GATEWAY_LOG_FORMAT"}
        env["GATEWAY_LOG_LEVEL"] = "warning"
        logging.disable(logging.INFO)
        if database:
            schema_url = await postgres.create_scratch_schema(database, "stmt")
            env["GATEWAY_DATABASE_URL"] = schema_url
        config = load_config(env={**os.environ, **env})
        runner = web.AppRunner(create_app(config), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        base = f"http://127.0.0.1:{port}"
        try:
            async with aiohttp.ClientSession() as session:
                provider = await provision.onboard(session, base, admin_token)
                await provision.create_users(session, provider, admin_token, 4)
                bodies = await provision.templates(session, provider)
                await observe.settle(session, base, timeout_s=60)
                STATEMENTS.clear()
                UNITS.clear()
                numbers = iter(range(messages))

                async def sender() -> None:
                    for n in numbers:
                        body = bodies[n % len(bodies)].replace(wrk.ID_SLOT, f"s{n}")
                        async with session.post(
                            f"{base}/v1/messages", data=body,
                            headers={**provider.headers, "Content-Type": "application/json"},
                        ) as response:  # fmt: skip
                            assert response.status == 202, await response.text()

                await asyncio.gather(*(sender() for _ in range(concurrency)))
                await observe.settle(session, base, timeout_s=120)
                await asyncio.sleep(1.0)  # the last statuses back from the platform
        finally:
            await runner.cleanup()
            if database:
                await postgres.drop_scratch_schema(database, schema_url)
    backend = "postgresql" if database else "sqlite"
    total = sum(STATEMENTS.values())
    print(f"{backend}: {messages} messages, {total / messages:.2f} statements and "
          f"{sum(UNITS.values()) / messages:.2f} write units per message")  # fmt: skip
    writes = sum(v for k, v in STATEMENTS.items() if k.startswith("write"))
    print(f"  of which {writes / messages:.2f} in write units (the writer's connection)")
    print("statements per message, by store function:")
    for name, count in STATEMENTS.most_common():
        print(f"  {count / messages:6.2f}  {name}")
    print("write units per message, by name:")
    for name, count in UNITS.most_common():
        print(f"  {count / messages:6.2f}  {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", help="a PostgreSQL URL (default: SQLite)")
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight")
    args = parser.parse_args()
    asyncio.run(run(args.database, args.messages, args.concurrency))


if __name__ == "__main__":
    main()
