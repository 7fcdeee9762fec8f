"""Exports verify offline; each way of tampering with the file is caught by its own test."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.service.audit.checkpoints import Signer, keyring
from gateway.service.audit.export import export_lines
from gateway.service.audit.verify import verify_export
from gateway.store import open_store


@pytest.fixture
def audit_db_url(store_url: str) -> str:
    """This module's audit databases, on every storage backend."""
    return store_url


async def export(db: Any, out: Path, **kw: Any) -> list[str]:
    store = await open_store(db.url, readonly=True)
    try:
        with out.open("wb") as file:
            async for chunk in export_lines(store, signer=kw.pop("signer", db.signer), **kw):
                file.write(chunk)
    finally:
        await store.close()
    return out.read_text().splitlines()


def kinds(lines: list[str]) -> list[str]:
    return [json.loads(line)["kind"] for line in lines]


def rewrite(path: Path, lines: list[str]) -> None:
    path.write_text("\n".join(lines) + "\n")


def index_of(lines: list[str], seq: int) -> int:
    return next(
        i
        for i, line in enumerate(lines)
        if json.loads(line)["kind"] == "record" and json.loads(line)["seq"] == seq
    )


async def test_a_full_export_verifies_offline(make_audit_db: Any, tmp_path: Path) -> None:
    db = await make_audit_db()
    out = tmp_path / "audit.jsonl"
    lines = await export(db, out)
    assert kinds(lines)[:2] == ["header", "anchor"]
    assert kinds(lines).count("record") == 30
    assert kinds(lines).count("checkpoint") == 2
    assert kinds(lines)[-1] == "seal"
    outcome = verify_export(out, db.keys)
    assert outcome.ok, outcome.render()
    assert outcome.records == 30 and outcome.chains[0].sealed
    assert not outcome.warnings


async def test_record_lines_hash_exactly_their_fields(make_audit_db: Any, tmp_path: Path) -> None:
    """What the README tells auditors: drop kind and hash, canonical JSON, chain SHA-256."""
    import hashlib

    db = await make_audit_db(records=3, checkpoint_at=())
    lines = await export(db, tmp_path / "a.jsonl")
    prev = bytes(32)
    for line in lines:
        obj = json.loads(line)
        if obj.pop("kind") != "record":
            continue
        stored = obj.pop("hash")
        body = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        prev = hashlib.sha256(prev + body.encode()).digest()
        assert prev.hex() == stored


async def test_a_time_range_export_starts_at_its_anchor(
    make_audit_db: Any, tmp_path: Path
) -> None:
    db = await make_audit_db()
    db.sql("UPDATE audit_records SET at = 1700000000000 + seq * 1000")  # 1 s apart
    out = tmp_path / "range.jsonl"
    lines = await export(
        db, out, start_ms=1700000000000 + 8 * 1000, end_ms=1700000000000 + 22 * 1000
    )
    anchor = json.loads(lines[1])
    assert (anchor["kind"], anchor["seq"]) == ("anchor", 7)
    records = [json.loads(x)["seq"] for x in lines if json.loads(x)["kind"] == "record"]
    assert records == list(range(8, 23))
    # Rewriting the timestamps was itself tampering, and the range export shows it.
    outcome = verify_export(out, db.keys)
    assert outcome.problem is not None and outcome.problem.startswith("record seq 8")


async def test_a_range_export_of_an_intact_log_verifies(
    make_audit_db: Any, tmp_path: Path
) -> None:
    db = await make_audit_db()
    store = await open_store(db.url, readonly=True)
    rows = await store.fetch("SELECT seq, at FROM audit_records ORDER BY seq")
    await store.close()
    at = {r["seq"]: r["at"] for r in rows}
    out = tmp_path / "range.jsonl"
    lines = await export(db, out, start_ms=at[12], end_ms=at[25])
    records = [json.loads(x)["seq"] for x in lines if json.loads(x)["kind"] == "record"]
    assert records[0] <= 12 and records[-1] >= 25
    outcome = verify_export(out, db.keys)
    assert outcome.ok, outcome.render()
    assert outcome.chains[0].anchor_seq == records[0] - 1


async def test_a_changed_field_in_the_file_is_caught(make_audit_db: Any, tmp_path: Path) -> None:
    db = await make_audit_db()
    out = tmp_path / "a.jsonl"
    lines = await export(db, out)
    i = index_of(lines, 9)
    lines[i] = lines[i].replace('"status":200', '"status":201')
    rewrite(out, lines)
    outcome = verify_export(out, db.keys)
    assert outcome.problem is not None
    assert outcome.problem.startswith(f"record seq 9 (line {i + 1}):")


async def test_a_deleted_line_is_caught(make_audit_db: Any, tmp_path: Path) -> None:
    db = await make_audit_db()
    out = tmp_path / "a.jsonl"
    lines = await export(db, out)
    del lines[index_of(lines, 14)]
    rewrite(out, lines)
    outcome = verify_export(out, db.keys)
    assert outcome.problem is not None
    assert outcome.problem.startswith("record seq 14:") and "missing" in outcome.problem


async def test_two_swapped_lines_are_caught(make_audit_db: Any, tmp_path: Path) -> None:
    db = await make_audit_db()
    out = tmp_path / "a.jsonl"
    lines = await export(db, out)
    i, j = index_of(lines, 4), index_of(lines, 5)
    lines[i], lines[j] = lines[j], lines[i]
    rewrite(out, lines)
    outcome = verify_export(out, db.keys)
    assert outcome.problem is not None
    assert outcome.problem.startswith("record seq 5")
    assert "swapped" in outcome.problem


async def test_a_cut_off_tail_is_caught_by_the_seal(make_audit_db: Any, tmp_path: Path) -> None:
    db = await make_audit_db()
    out = tmp_path / "a.jsonl"
    lines = await export(db, out)
    # Remove records 26..30 (after the last checkpoint), keep the seal line.
    keep = [x for x in lines if not (json.loads(x).get("seq", 0) > 25 and "record" in x[:20])]
    rewrite(out, keep)
    outcome = verify_export(out, db.keys)
    assert outcome.problem is not None
    assert "truncated" in outcome.problem and "sealed at seq 30" in outcome.problem


async def test_a_cut_off_tail_below_a_checkpoint_is_caught(
    make_audit_db: Any, tmp_path: Path
) -> None:
    db = await make_audit_db()
    out = tmp_path / "a.jsonl"
    lines = await export(db, out, signer=None)  # an unsealed export
    keep = [x for x in lines if not (json.loads(x).get("seq", 0) > 15 and "record" in x[:20])]
    rewrite(out, keep)
    outcome = verify_export(out, db.keys)
    assert outcome.problem is not None
    assert "truncated" in outcome.problem and "seq 20" in outcome.problem


async def test_a_cut_off_head_is_caught_by_the_seal(make_audit_db: Any, tmp_path: Path) -> None:
    db = await make_audit_db()
    out = tmp_path / "a.jsonl"
    lines = await export(db, out)
    # Drop records 1..3 and move the anchor onto record 3's (real) hash.
    third = json.loads(lines[index_of(lines, 3)])
    kept = [x for x in lines if not ('"kind":"record"' in x and json.loads(x)["seq"] <= 3)]
    kept[1] = json.dumps({"kind": "anchor", "chain_id": "main", "seq": 3, "hash": third["hash"]})
    rewrite(out, kept)
    outcome = verify_export(out, db.keys)
    assert outcome.problem is not None and "head were cut off" in outcome.problem


async def test_a_resigned_checkpoint_in_the_file_is_caught(
    make_audit_db: Any, tmp_path: Path
) -> None:
    db = await make_audit_db()
    out = tmp_path / "a.jsonl"
    lines = await export(db, out)
    other = Signer(Ed25519PrivateKey.generate())
    i = next(k for k, x in enumerate(lines) if json.loads(x)["kind"] == "checkpoint")
    cp = json.loads(lines[i])
    forged = other.sign(cp["chain_id"], cp["seq"], cp["hash"], cp["at"])
    lines[i] = json.dumps(
        {"kind": "checkpoint", **{k: getattr(forged, k) for k in cp if k != "kind"}}
    )
    # The forger also swaps the key in the header: only the published key catches it.
    header = json.loads(lines[0])
    header["public_keys"] = [other.public_b64]
    lines[0] = json.dumps(header)
    rewrite(out, lines)
    outcome = verify_export(out, db.keys)
    assert outcome.problem is not None
    assert outcome.problem.startswith("chain main checkpoint at seq 10:")
    assert "unknown key" in outcome.problem
    # Trusting the file's own key is flagged as such.
    outcome = verify_export(out, None)
    assert any("--public-key" in w for w in outcome.warnings)


async def test_keys_embedded_in_the_export_verify_with_a_warning(
    make_audit_db: Any, tmp_path: Path
) -> None:
    db = await make_audit_db()
    out = tmp_path / "a.jsonl"
    await export(db, out)
    outcome = verify_export(out, None)
    assert outcome.ok and any("--public-key" in w for w in outcome.warnings)
    assert verify_export(out, keyring([db.signer.public])).ok


async def test_garbage_lines_are_reported(make_audit_db: Any, tmp_path: Path) -> None:
    db = await make_audit_db(records=3, checkpoint_at=())
    out = tmp_path / "a.jsonl"
    lines = await export(db, out)
    lines.insert(3, "{not json")
    rewrite(out, lines)
    outcome = verify_export(out, db.keys)
    assert outcome.problem == "line 4: not valid JSON"
