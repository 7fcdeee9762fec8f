"""SIGTERM under load: a real `dma-gateway serve` process drains, hands work back, seals, exits 0.

An onboarded provider's users send messages concurrently (plaintext MIMI content to a sandbox
Instagram user, one conversation per sending user). Halfway through, the platform goes down so
that accepted messages wait in the outbox; then SIGTERM. Every message answered 202 must be
stored, no outbox claim may outlive the process, the audit log must be sealed and verify, and
the next process must deliver every accepted message exactly once.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import ADMIN_TOKEN, REPO, admin_headers
from tests.http.relay_support import eventually
from tests.onboarding_helpers import onboard
from tests.system.test_restart import LiveClient
from tests.system.test_serve import free_port, wait_until_up

SHUTDOWN_TIMEOUT_S = 5.0
SENDERS = 16
PEER_ID = "17841400000000001"
PEER = f"mimi://instagram/u/{PEER_ID}"


class Server:
    """One `python -m gateway serve` process on a data dir that outlives it."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
        env.update(
            PYTHONPATH=str(REPO),
            GATEWAY_PORT=str(self.port),
            GATEWAY_DATA_DIR=str(data_dir),
            GATEWAY_ADMIN_TOKEN=ADMIN_TOKEN,
            GATEWAY_LOG_FORMAT="json",
            GATEWAY_SERVER__SHUTDOWN_TIMEOUT_S=str(SHUTDOWN_TIMEOUT_S),
            # Load, not rate limits, is under test here.
            GATEWAY_LIMITS__MESSAGES__RATE_PER_S="100000",
            GATEWAY_LIMITS__MESSAGES__BURST="100000",
            GATEWAY_RELAY__RETRY_BASE_S="0.05",
            GATEWAY_RELAY__RETRY_MAX_S="0.2",
            GATEWAY_RELAY__MAX_ATTEMPTS="1000",
        )
        # Logs to a file: a pipe nobody reads would fill up and stall the server.
        self.log = data_dir.parent / f"serve-{self.port}.log"
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway", "serve"],
                cwd=data_dir.parent,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until_up(f"{self.url}/readyz")

    async def terminate(self) -> None:
        """SIGTERM; returns once the process has exited, failing if it outlives its budget."""
        self.proc.send_signal(signal.SIGTERM)

        async def exited() -> bool:
            return self.proc.poll() is not None

        await eventually(exited, within_s=SHUTDOWN_TIMEOUT_S)  # the budget it was given

    def events_since_sigterm(self) -> list[str]:
        """The log's event names from `shutdown_started` on."""
        events = [json.loads(line).get("event", "") for line in self.log.read_text().splitlines()
                  if line.startswith("{")]  # fmt: skip
        return events[events.index("shutdown_started") :] if "shutdown_started" in events else []

    def log_tail(self) -> str:
        return "\n".join(self.log.read_text().splitlines()[-20:])

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


def text_content(text: str) -> dict[str, Any]:
    encoded = base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()
    single = {"cardinality": "single", "contentType": "text/plain;charset=utf-8"}
    return {"nestedPart": {**single, "content": encoded}}


class Load:
    """Senders posting messages one after another; remembers what was answered 202."""

    def __init__(self, client: LiveClient, client_id: str, headers: dict[str, str]) -> None:
        self.client = client
        self.client_id = client_id
        self.headers = headers
        self.accepted: dict[str, str] = {}  # message id -> request id
        self.finished_at: list[float] = []
        self.stopping = asyncio.Event()
        self.half_way = asyncio.Event()
        self.under_way = asyncio.Event()

    async def sender(self, n: int) -> None:
        seq = 0
        while not self.stopping.is_set():
            message_id = f"s{n}-{seq}"
            body = {
                "id": message_id,
                "from": f"mimi://{self.client_id}/u/sender{n}",
                "to": PEER,
                "sent_at": int(time.time() * 1000),
                "content": text_content(message_id),
            }
            try:
                response = await self.client.post("/v1/messages", json=body, headers=self.headers)
                await response.read()
            except (aiohttp.ClientError, OSError):
                # Refused or closed while the server drains: not accepted; retried as a client
                # would, with the same id, until the process is gone.
                await asyncio.sleep(0.01)
                continue
            if response.status == 202:
                self.accepted[message_id] = response.headers["X-Request-Id"]
                self.finished_at.append(time.monotonic())
                if len(self.accepted) >= 150:
                    self.half_way.set()
                if len(self.accepted) >= 300:
                    self.under_way.set()
            seq += 1


def query(db: Path, sql: str, *args: Any) -> list[Any]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return conn.execute(sql, args).fetchall()


async def prepare(client: LiveClient) -> Any:
    """An onboarded provider and an Instagram sandbox user who consented to it."""
    provider = await onboard(client)
    response = await client.post(
        "/sandbox/v1/users",
        headers=admin_headers(),
        json={"service": "instagram", "id": PEER_ID, "name": "Sam", "consent": "all"},
    )
    assert response.status == 201, await response.text()
    return provider


async def delivered_texts(client: LiveClient) -> list[str]:
    response = await client.get(
        "/sandbox/v1/inbox", params={"user": PEER}, headers=admin_headers()
    )
    assert response.status == 200
    items = (await response.json())["items"]
    return [item["payload"]["entry"][0]["messaging"][0]["message"]["text"] for item in items]


async def test_sigterm_under_load_loses_nothing_accepted(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server = await asyncio.to_thread(Server, data_dir)
    try:
        async with aiohttp.ClientSession(
            base_url=server.url,
            connector=aiohttp.TCPConnector(limit=2 * SENDERS),  # room for admin calls
            timeout=aiohttp.ClientTimeout(total=3 * SHUTDOWN_TIMEOUT_S),
        ) as session:
            client = LiveClient(session, server.url)
            provider = await prepare(client)
            load = Load(client, provider.client_id, provider.headers())
            senders = [asyncio.create_task(load.sender(n)) for n in range(SENDERS)]
            await load.half_way.wait()
            # From here on, accepted messages wait in the outbox (retried with backoff).
            response = await client.post(
                "/sandbox/v1/outage",
                json={"service": "instagram", "down": True},
                headers=admin_headers(),
            )
            assert response.status in (200, 204)
            await load.under_way.wait()
            signalled = time.monotonic()
            await server.terminate()
            stopped_ms = int(time.time() * 1000)
            load.stopping.set()
            await asyncio.gather(*senders)
    finally:
        server.kill()
    assert server.proc.returncode == 0, server.log_tail()
    # Requests drain before the workers stop, and the final checkpoint comes after them.
    milestones = [
        "shutdown_started",
        "shutdown_requests_drained",
        "delivery_stopped",
        "audit_checkpoint_written",
        "shutdown_complete",
    ]
    events = iter(server.events_since_sigterm())
    assert all(m in events for m in milestones), server.log_tail()  # in this order
    # Requests in flight when the signal came were answered, not dropped.
    assert any(t >= signalled for t in load.finished_at)

    db = data_dir / "gateway.db"
    stored = {row[0] for row in query(db, "SELECT client_msg_id FROM relay_messages")}
    assert not set(load.accepted) - stored, "a message answered 202 was not stored"
    audited = {row[0] for row in query(db, "SELECT request_id FROM audit_records")}
    assert not set(load.accepted.values()) - audited, "an accepted message has no audit record"
    waiting = query(db, "SELECT lease_until FROM relay_outbox")
    assert waiting, "the outage should have left work in the outbox"
    assert all(lease <= stopped_ms for (lease,) in waiting), "a claim outlived the process"
    ((head, sealed),) = query(
        db,
        "SELECT (SELECT MAX(seq) FROM audit_records), (SELECT MAX(seq) FROM audit_checkpoints)",
    )
    assert head == sealed, "the final checkpoint does not cover the last audit record"
    verify = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "gateway", "audit", "verify", "--database", f"sqlite:///{db}"],
        env={**os.environ, "PYTHONPATH": str(REPO), "GATEWAY_DATA_DIR": str(data_dir)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr

    # The next process (the outage was the old one's) delivers every accepted message, once.
    restarted = await asyncio.to_thread(Server, data_dir)
    try:
        async with aiohttp.ClientSession(base_url=restarted.url) as session:
            client = LiveClient(session, restarted.url)
            deadline = time.monotonic() + 20
            texts = await delivered_texts(client)
            while len(set(texts)) < len(load.accepted) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
                texts = await delivered_texts(client)
        await restarted.terminate()
    finally:
        restarted.kill()
    assert restarted.proc.returncode == 0, restarted.log_tail()
    assert set(load.accepted) <= set(texts)
    twice = [text for text, n in collections.Counter(texts).items() if n > 1]
    assert not twice, f"delivered more than once: {twice[:5]}"
