"""`dma-gateway serve` as a real process on its embedded defaults."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_up(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.1)
    raise AssertionError(f"{url} did not come up")


@pytest.fixture
def served(tmp_path: Path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["GATEWAY_PORT"] = str(port)
    env["PYTHONPATH"] = str(REPO)  # this checkout's code, whatever the venv points at
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until_up(f"http://127.0.0.1:{port}/healthz")
        yield proc, port, tmp_path
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_serve_on_embedded_defaults(served) -> None:
    proc, port, cwd = served
    token = cwd / "var" / "admin-token"
    assert token.exists()
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    assert (cwd / "var" / "gateway.db").exists()
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/nope", timeout=5)
    except urllib.error.HTTPError as exc:
        assert exc.code == 404
        assert exc.headers["Content-Type"] == "application/problem+json"
    else:
        raise AssertionError("expected a 404")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        metrics = response.read().decode()
    assert (
        'gateway_http_requests_total{method="GET",route="unmatched",status="404"} 1.0' in metrics
    )
    proc.terminate()
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert f"http://127.0.0.1:{port}" in out
    assert "var/admin-token" in out


@pytest.mark.parametrize("which", ["server", "metrics"])
def test_a_port_in_use_is_one_line_and_exit_1(tmp_path: Path, which: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
        env |= {"GATEWAY_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(REPO)}
        args = ["--port", str(port)]
        where = f"127.0.0.1:{port}"
        if which == "metrics":
            args = ["--port", str(free_port())]
            env["GATEWAY_METRICS__LISTEN"] = where
            where += " (metrics.listen)"
        result = subprocess.run(
            [sys.executable, "-m", "gateway", "serve", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"dma-gateway: cannot listen on {where}: ")
    assert "in use" in lines[0]
    assert "serving on" not in result.stdout
    assert not (tmp_path / "data" / "admin-token").exists()


def test_metrics_on_their_own_listener(tmp_path: Path) -> None:
    port, metrics_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env |= {"PYTHONPATH": str(REPO), "GATEWAY_METRICS__LISTEN": f"127.0.0.1:{metrics_port}"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_up(f"http://127.0.0.1:{metrics_port}/metrics")
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics") as response:
            assert b"gateway_http_requests_total" in response.read()
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)
        assert caught.value.code == 404
        caught.value.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
