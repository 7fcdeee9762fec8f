"""Production log lines: one JSON object per line on stderr, rendered by msgspec."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import msgspec

SCRIPT = """
import structlog
from gateway.logs import configure_logging
configure_logging("json", "info")
structlog.contextvars.bind_contextvars(request_id="r1", route="/v1/messages")
log = structlog.get_logger("t")
log.debug("hidden")
log.info("request_handled", method="POST", status=202, duration_ms=1.5, odd=object())
"""


def test_json_lines_carry_the_event_its_context_and_a_timestamp() -> None:
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        check=True,
        timeout=30,
    )
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1  # below the level: not rendered at all
    line = msgspec.json.decode(lines[0])
    assert line["event"] == "request_handled" and line["level"] == "info"
    assert line["request_id"] == "r1" and line["route"] == "/v1/messages"
    assert line["status"] == 202 and line["duration_ms"] == 1.5
    assert line["odd"].startswith("<object object")  # what JSON has no type for: its repr
    assert line["timestamp"].endswith("Z")
