"""`dma-gateway admin`: a request through every phase, providers and token keys, by the
command line against a served gateway."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.admin_cli import requests_table
from gateway.cli import main
from gateway.service.working_days import WorkingDays
from tests.conftest import ADMIN_TOKEN
from tests.onboarding_helpers import new_key, submit_request
from tests.served import Served


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    served = Served(tmp_path / "data")
    monkeypatch.setenv("GATEWAY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GATEWAY_ADMIN_TOKEN", ADMIN_TOKEN)
    yield served
    served.close()


def admin(served: Served, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """Run `dma-gateway admin --url <served> ...` as its own process: exit code and output."""
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "admin", "--url", served.base_url, *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


def _day(offset: int) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(days=offset)).strftime("%Y-%m-%d")


async def _submit(client: Any) -> dict[str, Any]:
    _, jwk = new_key("ed25519", kid="k1")
    return await submit_request(client, [jwk], organisation="Cli Chat")


def test_a_request_through_every_phase_by_the_command_line(
    served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    created = served.call(served.with_client(_submit))
    rid = created["id"]
    code, out = admin(served, capsys, "requests", "list")
    assert code == 0
    assert rid in out and "Cli Chat" in out and "eligibility" in out
    assert admin(served, capsys, "requests", "decide", rid, "approve") == (0, f"{rid}: approved\n")
    code, out = admin(
        served, capsys, "requests", "plan", rid, "--next-update", _day(5), "--live", _day(200)
    )
    assert code == 1
    assert "422" in out and "field $.live" in out
    code, out = admin(
        served, capsys, "requests", "extend", rid, "--until", _day(210), "--reason", "New API"
    )
    assert (code, out) == (0, f"{rid}: approved\n")
    code, out = admin(
        served, capsys, "requests", "plan", rid, "--next-update", _day(5), "--live", _day(200)
    )
    assert (code, out) == (0, f"{rid}: planned\n")
    assert admin(served, capsys, "requests", "live", rid)[0] == 0
    code, out = admin(served, capsys, "requests", "show", rid)
    assert code == 0
    assert "phase:           live" in out
    assert "deadline extended to" in out and "New API" in out
    assert "Operational (Art. 7(5)), extended (Art. 7(6))" in out
    code, out = admin(served, capsys, "requests", "decide", rid, "reject", "--reason", "x")
    assert code == 1 and "409" in out

    code, out = admin(served, capsys, "providers", "list")
    assert code == 0 and "Cli Chat" in out and "active" in out
    client_id = out.splitlines()[1].split()[0]
    assert admin(served, capsys, "providers", "suspend", client_id, "--reason", "abuse") == (
        0,
        f"{client_id}: suspended\n",
    )
    assert admin(served, capsys, "providers", "resume", client_id)[1] == f"{client_id}: active\n"
    code, out = admin(served, capsys, "token-keys", "rotate")
    assert code == 0 and out.startswith("signing with ")


def test_exit_codes_say_what_went_wrong(
    served: Served, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert admin(served, capsys, "requests", "show", "nope")[0] == 1
    monkeypatch.setenv("GATEWAY_ADMIN_TOKEN", "wrong")
    code, out = admin(served, capsys, "requests", "list")
    assert code == 1 and "401" in out
    code = main(["admin", "--url", "http://127.0.0.1:9", "requests", "list"])
    assert code == 3
    monkeypatch.delenv("GATEWAY_ADMIN_TOKEN")
    monkeypatch.setenv("GATEWAY_DATA_DIR", "/nonexistent-dir")
    code = main(["admin", "requests", "list"])
    assert code == 2
    assert "no admin token" in capsys.readouterr().err


def test_the_list_puts_overdue_requests_first() -> None:
    now = 1_800_000_000_000
    day = 86_400_000

    def item(rid: str, due: int) -> dict[str, Any]:
        deadline = {"name": "eligibility", "due_at": due, "met_at": None}
        return {
            "id": rid,
            "status": "received",
            "organisation": "O",
            "confidential": False,
            "deadlines": [deadline],
        }

    table = requests_table(
        [item("later", now + 20 * day), item("late", now - 3 * day), item("soon", now + day)],
        now,
        WorkingDays(),
    )
    ids = [line.split()[0] for line in table.splitlines()[1:]]
    assert ids == ["late", "soon", "later"]
    assert "OVERDUE" in table.splitlines()[1]
