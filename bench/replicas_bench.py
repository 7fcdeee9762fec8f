"""Messages/s through one gateway replica and through two on the same PostgreSQL database.

Each run starts fresh `python -m gateway serve` processes in a new schema, onboards a provider,
sends N plaintext Instagram messages (C at a time, round-robin over the replicas) and waits
until every one is in its sandbox inbox.

    python bench/replicas_bench.py --database postgresql://postgres@127.0.0.1:5432/test \
        [--messages 1000] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import admin_headers
from tests.onboarding_helpers import onboard
from tests.test_replicas import INSTAGRAM, PUBLIC_URL, Replica, mimi_text
from tests.test_restart import LiveClient


async def run(database: str, replicas: int, messages: int, concurrency: int) -> None:
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(database)
    await conn.execute(f"CREATE SCHEMA {schema}")
    url = f"{database}{'&' if '?' in database else '?'}search_path={schema}"
    with tempfile.TemporaryDirectory() as tmp:
        nodes = [Replica(f"gw-{n}", Path(tmp) / "var", url) for n in range(replicas)]
        for node in nodes:
            await asyncio.to_thread(node.start)
        try:
            sessions = [aiohttp.ClientSession(base_url=node.base) for node in nodes]
            provider = await onboard(LiveClient(sessions[0], PUBLIC_URL))
            for uri in INSTAGRAM:
                response = await sessions[0].post(
                    "/sandbox/v1/users", headers=admin_headers(),
                    json={"service": "instagram", "id": uri.rsplit("/", 1)[1], "name": "U",
                          "consent": [provider.client_id]},
                )  # fmt: skip
                assert response.status == 201
            numbers = iter(range(messages))
            rr = itertools.cycle(sessions)

            async def sender(local: str) -> None:
                for n in numbers:
                    body = {
                        "id": f"b{n}", "from": f"mimi://{provider.client_id}/u/{local}",
                        "to": INSTAGRAM[n % len(INSTAGRAM)], "sent_at": int(time.time() * 1000),
                        "content": mimi_text(f"msg-{n}"),
                    }  # fmt: skip
                    async with next(rr).post(
                        "/v1/messages", json=body, headers=provider.headers()
                    ) as response:
                        assert response.status == 202, await response.text()

            started = time.monotonic()
            await asyncio.gather(*(sender(f"u{c}") for c in range(concurrency)))
            accepted = time.monotonic() - started
            for _ in itertools.count():  # until every message is in an inbox
                if await conn.fetchval(f"SELECT COUNT(*) FROM {schema}.sandbox_inbox") >= messages:
                    break
                await asyncio.sleep(0.02)
            delivered = time.monotonic() - started
            print(
                f"{replicas} replica(s): {messages} messages accepted in {accepted:.2f} s "
                f"({messages / accepted:.0f}/s), all delivered in {delivered:.2f} s "
                f"({messages / delivered:.0f}/s)"
            )
            for session in sessions:
                await session.close()
        finally:
            for node in nodes:
                node.stop()
            await conn.execute(f"DROP SCHEMA {schema} CASCADE")
            await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", required=True)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    for replicas in (1, 2):
        asyncio.run(run(args.database, replicas, args.messages, args.concurrency))


if __name__ == "__main__":
    main()
