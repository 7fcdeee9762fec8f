"""`dma-gateway audit ...` as real processes: exit codes and what they print."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import REPO


def audit(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["GATEWAY_DATA_DIR"] = str(data_dir)
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", "gateway", "audit", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_verify_export_and_public_key(make_audit_db: Any, tmp_path: Path) -> None:
    db = await make_audit_db()
    done = audit(db.data_dir, "verify")
    assert done.returncode == 0, done.stderr
    assert "INTACT: 30 records verified" in done.stdout

    key = audit(db.data_dir, "public-key")
    assert key.returncode == 0 and key.stdout.strip() == db.signer.public_b64
    key_file = tmp_path / "audit-key.pem"
    key_file.write_text(audit(db.data_dir, "public-key", "--pem").stdout)

    out = tmp_path / "audit.jsonl"
    done = audit(db.data_dir, "export", "--out", str(out))
    assert done.returncode == 0, done.stderr
    done = audit(db.data_dir, "verify", "--export", str(out), "--public-key", str(key_file))
    assert done.returncode == 0, done.stderr
    assert "export seal verified" in done.stdout

    lines = out.read_text().splitlines()
    lines[5] = lines[5].replace('"status":200', '"status":204')
    out.write_text("\n".join(lines) + "\n")
    done = audit(db.data_dir, "verify", "--export", str(out), "--public-key", str(key_file))
    assert done.returncode == 1
    assert "TAMPERED: record seq" in done.stderr and "line 6" in done.stderr


async def test_verify_database_reports_the_first_bad_record(make_audit_db: Any) -> None:
    db = await make_audit_db()
    db.sql("DELETE FROM audit_records WHERE seq = 3")
    done = audit(db.data_dir, "verify", "--database", db.url)
    assert done.returncode == 1
    assert "TAMPERED: record seq 3: missing" in done.stderr


async def test_usage_errors_exit_2(make_audit_db: Any, tmp_path: Path) -> None:
    done = audit(tmp_path / "empty", "verify")
    assert done.returncode == 2 and "no public key" in done.stderr
    db = await make_audit_db()
    done = audit(db.data_dir, "verify", "--database", f"sqlite:///{tmp_path / 'nope.db'}")
    assert done.returncode == 2 and "cannot open the database" in done.stderr
    done = audit(db.data_dir, "verify", "--export", str(tmp_path / "missing.jsonl"))
    assert done.returncode == 2
    done = audit(db.data_dir, "export", "--out", "x.jsonl", "--from", "yesterday")
    assert done.returncode == 2 and "ISO 8601" in done.stderr
    done = audit(db.data_dir, "report", "--out", str(tmp_path / "r.pdf"))
    assert done.returncode == 2


async def test_report_html_is_self_contained_and_json_is_data(
    make_audit_db: Any, tmp_path: Path
) -> None:
    db = await make_audit_db()
    html_path, json_path = tmp_path / "report.html", tmp_path / "report.json"
    assert audit(db.data_dir, "report", "--out", str(html_path)).returncode == 0
    assert audit(db.data_dir, "report", "--out", str(json_path)).returncode == 0
    html = html_path.read_text()
    assert "<svg" in html
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert "<script" not in html.lower()
    assert "Data register" in html and "90-day deadline" in html
    report = json.loads(json_path.read_text())
    assert report["audit"]["records"] == 30
    assert report["messages"] == {
        "accepted": 0,
        "refused": 0,
        "refused_by_reason": [],
        "delivered": {"to_platform": 30},
        "failed_by_reason": {},
    }
    assert report["requests"] == [
        {"party": "acme", "service": "whatsapp", "total": 30, "outcomes": {"2xx": 30}}
    ]
    assert report["interop_requests"] == {"available": True, "deadline_days": 90, "items": []}
    states = {(f["service"], f["functionality"]): f["state"] for f in report["functionalities"]}
    assert states[("whatsapp", "text")] == "available"
    assert states[("whatsapp", "voice_calls")] == "planned"
    assert report["data_register"]


async def test_report_for_a_chosen_period(make_audit_db: Any, tmp_path: Path) -> None:
    db = await make_audit_db()
    out = tmp_path / "period.json"
    done = audit(
        db.data_dir, "report", "--out", str(out), "--from", "2000-01-01", "--to", "2000-12-31"
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert report["period"] == {
        "from": "2000-01-01T00:00:00+00:00",
        "to": "2000-12-31T23:59:59+00:00",  # a bare date ends with its day
        "chosen": True,
    }
    assert report["audit"]["records"] == 0
    assert report["messages"]["delivered"] == {}
    done = audit(db.data_dir, "report", "--out", str(out), "--from", "2000-01-01")
    assert json.loads(out.read_text())["audit"]["records"] == 30
    done = audit(db.data_dir, "report", "--out", str(out), "--to", "last week")
    assert done.returncode == 2 and "ISO 8601" in done.stderr
