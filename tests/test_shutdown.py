"""SIGTERM under load: a real `dma-gateway serve` process drains, seals its audit log, exits 0."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import ADMIN_TOKEN, REPO
from tests.test_serve import free_port, wait_until_up

SHUTDOWN_TIMEOUT_S = 5.0
WORKERS = 24


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
        wait_until_up(f"{self.url}/healthz")

    async def terminate(self) -> float:
        """SIGTERM; the seconds until the process has exited."""
        sent = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        while self.proc.poll() is None:
            assert time.monotonic() - sent < 3 * SHUTDOWN_TIMEOUT_S, "no exit after SIGTERM"
            await asyncio.sleep(0.01)
        return time.monotonic() - sent

    def log_tail(self) -> str:
        return "\n".join(self.log.read_text().splitlines()[-20:])

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


class Load:
    """Concurrent clients; remembers the request ids answered 2xx and when each ended."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.accepted: list[str] = []
        self.finished_at: list[float] = []
        self.stopping = asyncio.Event()
        self.under_way = asyncio.Event()

    async def client(self, session: aiohttp.ClientSession) -> None:
        while not self.stopping.is_set():
            request_id = uuid.uuid4().hex
            try:
                async with session.get(
                    f"{self.url}/healthz", headers={"X-Request-Id": request_id}
                ) as response:
                    await response.read()
                    if 200 <= response.status < 300:
                        self.accepted.append(request_id)
                        self.finished_at.append(time.monotonic())
                        if len(self.accepted) >= 200:
                            self.under_way.set()
            except (aiohttp.ClientError, OSError):
                # Refused or closed while the server drains: not accepted, so not counted.
                await asyncio.sleep(0.01)


def audited_request_ids(db: Path) -> set[str]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return {row[0] for row in conn.execute("SELECT request_id FROM audit_records")}


def unsealed_records(db: Path) -> int:
    """Records of the chain after its last signed checkpoint."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        head = conn.execute("SELECT MAX(seq) FROM audit_records").fetchone()[0]
        sealed = conn.execute("SELECT MAX(seq) FROM audit_checkpoints").fetchone()[0]
    return int(head) - int(sealed or 0)


async def test_sigterm_under_load_drains_seals_and_exits_zero(data_dir: Path) -> None:
    server = await asyncio.to_thread(Server, data_dir)
    load = Load(server.url)
    try:
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=WORKERS),
            timeout=aiohttp.ClientTimeout(total=3 * SHUTDOWN_TIMEOUT_S),
        ) as session:
            clients = [asyncio.create_task(load.client(session)) for _ in range(WORKERS)]
            await load.under_way.wait()
            signalled = time.monotonic()
            took = await server.terminate()
            load.stopping.set()
            await asyncio.gather(*clients)
    finally:
        server.kill()
    assert server.proc.returncode == 0, server.log_tail()
    assert took < SHUTDOWN_TIMEOUT_S, f"exit took {took:.2f}s"
    # Requests answered while the signal was being handled (they were in flight) count too.
    assert any(t >= signalled for t in load.finished_at)

    db = data_dir / "gateway.db"
    missing = set(load.accepted) - audited_request_ids(db)
    assert not missing, f"{len(missing)} of {len(load.accepted)} answered requests left no record"
    assert unsealed_records(db) == 0  # the final checkpoint covers the last record
    verify = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "gateway", "audit", "verify", "--database", f"sqlite:///{db}"],
        env={**os.environ, "PYTHONPATH": str(REPO), "GATEWAY_DATA_DIR": str(data_dir)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr

    restarted = await asyncio.to_thread(Server, data_dir)  # and the same data dir serves again
    try:
        assert await restarted.terminate() < SHUTDOWN_TIMEOUT_S
    finally:
        restarted.kill()
    assert restarted.proc.returncode == 0
