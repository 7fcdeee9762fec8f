"""Server processes of a benchmark: started pinned to a core, watched, measured, stopped."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import aiohttp

import gateway

# The checkout the bench runs from: its subprocesses run the same code.
REPO_ROOT = Path(gateway.__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def available_cpus() -> list[int]:
    """The cores this process may run on."""
    return sorted(os.sched_getaffinity(0))


def pin_self(cpu: int | None) -> None:
    """Run this process (the load generator) on `cpu` only."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


def rss_mb(pid: int) -> float:
    """Resident memory of `pid` in MB (VmRSS), 0 when it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Server:
    """A server subprocess pinned to one core, its output in a log file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        port: int,
        cpu: int | None,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        code: Path = REPO_ROOT,
    ) -> None:
        self.name = name
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        # Only the bench decides the servers' configuration: no GATEWAY_* of the caller.
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
        full_env = {**inherited, **(env or {}), "PYTHONPATH": str(code)}
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, *argv],
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # The server gets its own core; the load generator keeps the other.
            preexec_fn=(lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss_mb(self) -> float:
        """Its resident memory now."""
        return rss_mb(self.proc.pid)

    async def wait_ready(self, path: str = "/healthz", timeout_s: float = 60.0) -> None:
        """Wait until `path` answers 200; fail with the log's tail if the process died."""
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited: {self.tail()}")
                try:
                    async with session.get(self.url + path) as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready after {timeout_s}s: {self.tail()}")

    def tail(self, lines: int = 20) -> str:
        """The last lines of its output."""
        self._log.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stop(self, timeout_s: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL if it does not exit in time; its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode
