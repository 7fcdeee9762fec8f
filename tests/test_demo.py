"""`dma-gateway demo` as a real process: the transcript shows each step, both ends, no plaintext
in what the gateway saw."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import REPO


def test_demo_runs_the_whole_scenario() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run(
        [sys.executable, "-m", "gateway", "demo"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for step in ("alice -> Wanda: text", "image with caption", "Wanda -> alice: text",
                 "reacts 👍", "replies", "Read receipts"):  # fmt: skip
        assert step in out, step
    gateway_saw = [line for line in out.splitlines() if "gateway saw" in line]
    assert len(gateway_saw) == 5
    for line in gateway_saw:
        envelope = json.loads(line.split(": ", 1)[1])
        assert envelope["encrypted"]["protocol"] == "olm.v1"
        for secret in ("Kaffee", "Café", "Gern", "👍", "Kuchen"):
            assert secret not in line
    wanda = [
        json.loads(line.split(": ", 1)[1]) for line in out.splitlines() if "Wanda got" in line
    ]
    assert wanda[0]["text"] == {"body": "Hallo Wanda! Kaffee um drei?"}
    assert wanda[1]["image"]["caption"] == "Unser Café"
    assert wanda[2]["reaction"]["emoji"] == "👍"
    assert wanda[3]["context"]["id"] == wanda[2]["reaction"]["message_id"]
    assert wanda[4]["status"] == "read"
    assert "alice got     : 'Gern! Bis gleich ☕'" in out
    assert "hash and GCM tag verified" in out
    assert "'delivered' for her message" in out
