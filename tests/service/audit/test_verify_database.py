"""Each way of tampering with the database is caught, by its own test, naming the record."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.service.audit.checkpoints import Signer, keyring
from gateway.service.audit.records import GENESIS


@pytest.fixture
def audit_db_url(store_url: str) -> str:
    """This module's audit databases, on every storage backend."""
    return store_url


async def test_an_untouched_log_is_intact(make_audit_db: Any) -> None:
    db = await make_audit_db()
    outcome = await db.verify()
    assert outcome.ok, outcome.render()
    [chain] = outcome.chains
    assert (chain.records, chain.checkpoints, chain.last_checkpoint) == (30, 2, 20)
    # The unsigned tail is named, not hidden.
    assert any("21..30" in w for w in outcome.warnings)
    assert "INTACT: 30 records" in outcome.render()


async def test_a_changed_field_is_caught(make_audit_db: Any) -> None:
    db = await make_audit_db()
    db.sql("UPDATE audit_records SET status = 500 WHERE seq = 5")
    outcome = await db.verify()
    assert not outcome.ok
    assert outcome.problem is not None
    assert outcome.problem.startswith("record seq 5:")
    assert "field was changed" in outcome.problem


async def test_a_changed_subject_list_is_caught(make_audit_db: Any) -> None:
    db = await make_audit_db()
    db.sql("UPDATE audit_records SET subjects = '[]' WHERE seq = 12")
    outcome = await db.verify()
    assert outcome.problem is not None and outcome.problem.startswith("record seq 12:")


async def test_a_deleted_record_is_caught(make_audit_db: Any) -> None:
    db = await make_audit_db()
    db.sql("DELETE FROM audit_records WHERE seq = 7")
    outcome = await db.verify()
    assert outcome.problem is not None
    assert outcome.problem.startswith("record seq 7:")
    assert "missing" in outcome.problem


async def test_two_swapped_records_are_caught(make_audit_db: Any) -> None:
    db = await make_audit_db()
    db.sql(
        "UPDATE audit_records SET seq = -1 WHERE seq = 5",
        "UPDATE audit_records SET seq = 5 WHERE seq = 6",
        "UPDATE audit_records SET seq = 6 WHERE seq = -1",
    )
    outcome = await db.verify()
    assert outcome.problem is not None
    assert outcome.problem.startswith("record seq 5:")
    assert "swapped" in outcome.problem


async def test_records_cut_off_below_a_checkpoint_are_caught(make_audit_db: Any) -> None:
    db = await make_audit_db()
    db.sql("DELETE FROM audit_records WHERE seq > 15")
    outcome = await db.verify()
    assert outcome.problem is not None
    assert "truncated" in outcome.problem
    assert "seq 20" in outcome.problem and "ends at seq 15" in outcome.problem


async def test_everything_cut_off_below_a_checkpoint_is_caught(make_audit_db: Any) -> None:
    db = await make_audit_db()
    db.sql("DELETE FROM audit_records")
    outcome = await db.verify()
    assert outcome.problem is not None and "truncated" in outcome.problem


async def test_the_unsigned_tail_removed_with_later_checkpoints_is_not_detectable(
    make_audit_db: Any,
) -> None:
    """Documented limit: a tail no signature covers can go unnoticed in the database alone."""
    db = await make_audit_db()
    db.sql("DELETE FROM audit_records WHERE seq > 20")
    outcome = await db.verify()
    assert outcome.ok
    assert outcome.chains[0].last_seq == 20


async def test_a_forged_checkpoint_signature_is_caught(make_audit_db: Any) -> None:
    db = await make_audit_db()
    forged = base64.b64encode(bytes(64)).decode()
    db.sql(f"UPDATE audit_checkpoints SET signature = '{forged}' WHERE seq = 10")
    outcome = await db.verify()
    assert outcome.problem is not None
    assert outcome.problem.startswith("chain main checkpoint at seq 10:")
    assert "does not verify" in outcome.problem


async def test_a_checkpoint_resigned_with_another_key_is_caught(make_audit_db: Any) -> None:
    """Rewrite record 15, re-chain everything after it, re-sign the checkpoint at 20."""
    db = await make_audit_db()
    _rewrite_and_rechain(db, seq=15)
    other = Signer(Ed25519PrivateKey.generate())
    [(head,)] = db.run("SELECT hash FROM audit_records WHERE seq = 20")
    cp = other.sign("main", 20, head, 0)
    db.run(
        "UPDATE audit_checkpoints SET hash = ?, at = 0, key_id = ?, signature = ? WHERE seq = 20",
        cp.hash, cp.key_id, cp.signature,
    )  # fmt: skip
    outcome = await db.verify()  # against the published key
    assert outcome.problem is not None
    assert outcome.problem.startswith("chain main checkpoint at seq 20:")
    assert "unknown key" in outcome.problem
    # Under the attacker's own key the forgery is consistent: only the published key tells.
    assert (await db.verify(keyring([other.public, db.signer.public]))).ok


async def test_a_resigned_checkpoint_claiming_the_published_key_id_is_caught(
    make_audit_db: Any,
) -> None:
    db = await make_audit_db()
    other = Signer(Ed25519PrivateKey.generate())
    [(head,)] = db.run("SELECT hash FROM audit_records WHERE seq = 10")
    cp = other.sign("main", 10, head, 0)
    db.run("UPDATE audit_checkpoints SET at = 0, signature = ? WHERE seq = 10", cp.signature)
    outcome = await db.verify()
    assert outcome.problem is not None and "does not verify" in outcome.problem


async def test_a_rewritten_and_rechained_history_fails_its_checkpoint(make_audit_db: Any) -> None:
    db = await make_audit_db()
    _rewrite_and_rechain(db, seq=15)
    outcome = await db.verify()
    assert outcome.problem is not None
    assert outcome.problem.startswith("record seq 20:")
    assert "rewritten" in outcome.problem


def _rewrite_and_rechain(db: Any, *, seq: int) -> None:
    """Change record `seq` and recompute every later hash, as a careful attacker would."""
    from gateway.service.audit.export import record_fields
    from gateway.service.audit.records import COLUMNS, FIELDS, chain_hash

    db.run("UPDATE audit_records SET status = 403 WHERE seq = ?", seq)
    rows = db.run(f"SELECT {COLUMNS} FROM audit_records ORDER BY seq")
    prev = GENESIS
    for row in rows:
        digest = chain_hash(prev, record_fields(row))
        db.run(
            "UPDATE audit_records SET hash = ? WHERE seq = ?",
            digest.hex(),
            row[FIELDS.index("seq")],
        )
        prev = digest


async def test_a_missing_public_key_fails_every_checkpoint(make_audit_db: Any) -> None:
    db = await make_audit_db()
    other = Signer(Ed25519PrivateKey.generate())
    outcome = await db.verify(keyring([other.public]))
    assert outcome.problem is not None and "unknown key" in outcome.problem
