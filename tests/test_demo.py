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
    assert len(gateway_saw) == 6
    for line in gateway_saw[:5]:
        envelope = json.loads(line.split(": ", 1)[1])
        assert envelope["encrypted"]["protocol"] == "olm.v1"
        for secret in ("Kaffee", "Café", "Gern", "👍", "Kuchen"):
            assert secret not in line
    group_envelope = json.loads(gateway_saw[5].split(": ", 1)[1])
    assert group_envelope["encrypted"]["protocol"] == "megolm.v1"
    assert "Kuchen" not in gateway_saw[5]
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
    # The group: both WhatsApp members and the other provider's user read alice; a removal
    # rotates her session, and the removed member reads nothing after it.
    group = out[out.index("creates a WhatsApp group") :]
    assert "group_participants_add" in group
    for line in ("Kuchen für alle am Samstag!", "Ich bin dabei!", "Ohne Walter geht's weiter."):
        assert f"bob got       : {line!r}" in group, line
    assert group.count('"body": "Kuchen für alle am Samstag!"') == 2  # Wanda and Walter
    assert "alice got     : 'Ich bin dabei!'" in group
    assert "(rotated: True)" in group
    assert "Walter got    : nothing after his removal" in group
