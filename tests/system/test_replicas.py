"""Two real gateway processes on one PostgreSQL database, one killed with SIGKILL part-way.

A provider sends N messages spread over both replicas (a client that fails over to the other
replica with the same id when one dies, as behind a load balancer). Every message answered 2xx
must reach its sandbox user exactly once and in order per conversation (encrypted WhatsApp
conversations would not even decrypt out of order), and every replica's audit chain must
verify. Skipped, saying why, without PostgreSQL.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import msgspec

from gateway.crypto import OlmParty
from tests.conftest import ADMIN_TOKEN, REPO, admin_headers
from tests.onboarding_helpers import onboard
from tests.system.test_restart import LiveClient
from tests.system.test_serve import free_port, wait_until_up

MESSAGES = 200
INSTAGRAM = [f"mimi://instagram/u/1784{n}" for n in range(3)]
WHATSAPP = "mimi://whatsapp/u/4915112345678"
MARK = re.compile(r"msg-\d+")
# What the load balancer in front of the replicas is reached at: tokens name it (iss, aud).
PUBLIC_URL = "http://dma-gateway.test"


class Replica:
    """One `python -m gateway serve` process with its own port and replica id."""

    def __init__(self, name: str, data_dir: Path, database_url: str) -> None:
        self.name, self.data_dir, self.database_url = name, data_dir, database_url
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
        env |= {
            "PYTHONPATH": str(REPO),
            "GATEWAY_PORT": str(self.port),
            "GATEWAY_PUBLIC_URL": PUBLIC_URL,
            "GATEWAY_REPLICA_ID": self.name,
            "GATEWAY_DATABASE_URL": self.database_url,
            "GATEWAY_DATA_DIR": str(self.data_dir),  # shared: keys must be the same
            "GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN,
            "GATEWAY_PLATFORMS": "sandbox",
            "GATEWAY_LOG_FORMAT": "json",
            "GATEWAY_STORAGE__POOL_SIZE": "4",
            "GATEWAY_RELAY__LEASE_S": "3",
            "GATEWAY_RELAY__RETRY_BASE_S": "0.05",
            "GATEWAY_RELAY__RETRY_MAX_S": "0.2",
            "GATEWAY_RELAY__MAX_ATTEMPTS": "1000",
            # The shared buckets are exercised, not exhausted.
            "GATEWAY_LIMITS__MESSAGES__RATE_PER_S": "10000",
            "GATEWAY_LIMITS__MESSAGES__BURST": "10000",
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve"],
            cwd=self.data_dir.parent, env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_until_up(f"{self.base}/readyz")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)  # no shutdown: its leases stay behind
        self.proc.wait(timeout=20)

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return 0
        self.proc.terminate()
        return self.proc.wait(timeout=30)


def mimi_text(text: str) -> dict[str, Any]:
    content = base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()
    part = {"cardinality": "single", "contentType": "text/plain;charset=utf-8", "content": content}
    return {"nestedPart": part}


class Sender:
    """A conversation: one third-party user to one sandbox user, sent in order."""

    def __init__(self, client_id: str, local: str, to: str) -> None:
        self.uri, self.to = f"mimi://{client_id}/u/{local}", to
        self.party = OlmParty() if to == WHATSAPP else None
        self.bundle: dict[str, Any] | None = None
        self.sent: list[str] = []

    def body(self, n: int) -> dict[str, Any]:
        text = f"msg-{n}"
        body: dict[str, Any] = {
            "id": f"c{n}", "from": self.uri, "to": self.to, "sent_at": int(time.time() * 1000),
        }  # fmt: skip
        if self.party is None:
            return body | {"content": mimi_text(text)}
        assert self.bundle is not None
        native = msgspec.json.encode({"type": "text", "text": {"body": text}})
        otk = self.bundle["one_time_key"]["key"]
        enc = self.party.encrypt(self.bundle["identity_key"], native, one_time_key=otk)
        return body | {"encrypted": enc.to_wire()}


async def post_somewhere(
    sessions: list[aiohttp.ClientSession],
    first: int,
    body: dict[str, Any],
    headers: Any,
    *,
    path: str = "/v1/messages",
    attempts: int = 6,
) -> int:
    """POST to replica `first`; on a dead replica, the same message (same id) to the other."""
    for attempt in range(attempts):
        session = sessions[(first + attempt) % len(sessions)]
        try:
            async with session.post(path, json=body, headers=headers) as response:
                if response.status != 503:
                    return response.status
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    return 0


async def test_two_replicas_one_killed_deliver_every_accepted_message_once(
    tmp_path: Path, postgres_url: str
) -> None:
    data_dir = tmp_path / "var"
    a, b = Replica("gw-a", data_dir, postgres_url), Replica("gw-b", data_dir, postgres_url)
    await asyncio.to_thread(a.start)
    await asyncio.to_thread(b.start)
    statuses: dict[str, int] = {}
    try:
        async with (
            aiohttp.ClientSession(base_url=a.base) as on_a,
            aiohttp.ClientSession(base_url=b.base) as on_b,
        ):
            provider = await onboard(LiveClient(on_a, PUBLIC_URL))
            headers = provider.headers()
            for n, uri in enumerate([*INSTAGRAM, WHATSAPP]):
                native = uri.rsplit("/", 1)[1]
                service = uri.split("/")[2]
                response = await (on_a if n % 2 else on_b).post(
                    "/sandbox/v1/users", headers=admin_headers(),
                    json={"service": service, "id": native, "name": f"User {n}",
                          "consent": [provider.client_id]},
                )  # fmt: skip
                assert response.status == 201, await response.text()
            senders = [
                Sender(provider.client_id, f"u{n}", to)
                for n, to in enumerate([*INSTAGRAM, WHATSAPP, WHATSAPP])
            ]
            for sender in senders:
                if sender.party is not None:  # two conversations into one Olm account
                    async with on_b.get(
                        "/v1/keys", params={"user": WHATSAPP}, headers=headers
                    ) as response:
                        assert response.status == 200, await response.text()
                        sender.bundle = await response.json()

            sessions = [on_a, on_b]
            killed = asyncio.Event()

            async def conversation(index: int, sender: Sender, numbers: list[int]) -> None:
                for k, n in enumerate(numbers):
                    body = sender.body(n)
                    status = await post_somewhere(sessions, (index + k) % 2, body, headers)
                    statuses[body["id"]] = status
                    if 200 <= status < 300:
                        sender.sent.append(f"msg-{n}")
                    if n == MESSAGES // 2 and not killed.is_set():
                        killed.set()
                        b.kill()  # part-way, with requests in flight on it
                        await asyncio.to_thread(b.start)  # restarted: same id, same chain

            plan: dict[int, list[int]] = defaultdict(list)
            for n in range(MESSAGES):
                plan[n % len(senders)].append(n)
            started = time.monotonic()
            await asyncio.gather(*(conversation(i, s, plan[i]) for i, s in enumerate(senders)))
            accepted_s = time.monotonic() - started
            assert killed.is_set()

            async def received() -> dict[str, list[str]]:
                got: dict[str, list[str]] = {}
                for uri in [*INSTAGRAM, WHATSAPP]:
                    async with on_a.get(
                        "/sandbox/v1/inbox", params={"user": uri}, headers=admin_headers()
                    ) as response:
                        assert response.status == 200
                        items = (await response.json())["items"]
                    got[uri] = [
                        m
                        for i in items
                        for m in MARK.findall(msgspec.json.encode(i["payload"]).decode())
                    ]
                return got

            accepted = sum(1 for s in statuses.values() if 200 <= s < 300)
            for _ in range(300):  # 30 s at most
                inboxes = await received()
                if sum(len(v) for v in inboxes.values()) >= accepted:
                    break
                await asyncio.sleep(0.1)
            delivered_s = time.monotonic() - started
            await asyncio.sleep(1.0)  # a duplicate would show up by now
            inboxes = await received()
    finally:
        codes = [b.stop(), a.stop()]
    assert codes == [0, 0]
    assert accepted == MESSAGES, (
        f"not answered 2xx: {[k for k, s in statuses.items() if s >= 300]}"
    )
    everything = [m for marks in inboxes.values() for m in marks]
    assert len(everything) == len(set(everything)) == MESSAGES  # each exactly once
    for sender in senders:  # in order per conversation (one conversation per sender)
        assert [m for m in inboxes[sender.to] if m in set(sender.sent)] == sender.sent
    print(
        f"\n{MESSAGES} messages over 2 replicas, one killed and restarted: accepted in "
        f"{accepted_s:.1f} s, all delivered after {delivered_s:.1f} s"
    )

    conn = await asyncpg.connect(postgres_url)
    try:
        outcome = await conn.fetch(
            "SELECT status, COUNT(*) AS n FROM relay_messages WHERE kind = 'message' "
            "AND direction = 'outbound' GROUP BY status"
        )
        assert {row["status"]: row["n"] for row in outcome} == {"delivered": MESSAGES}
        assert await conn.fetchval("SELECT COUNT(*) FROM relay_outbox") == 0
    finally:
        await conn.close()

    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env |= {"PYTHONPATH": str(REPO), "GATEWAY_DATA_DIR": str(data_dir)}
    verify = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "gateway", "audit", "verify", "--database", postgres_url],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stderr
    assert "chain gw-a" in verify.stdout and "chain gw-b" in verify.stdout, verify.stdout
