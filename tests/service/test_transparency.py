"""The key transparency service: what is logged when, heads on time and at shutdown, rotation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.crypto import OlmParty
from gateway.crypto.transparency import inclusion_problem, keyring, parse_leaf
from gateway.errors import ValidationFailed
from gateway.platforms.base import ClaimedBundle
from gateway.service.transparency import (
    KeyTransparency,
    load_head_signer,
    retired_public_keys,
    rotate_key,
)
from gateway.store import Store, open_store
from gateway.store import transparency as kt_store
from tests.service.fakes import RecordingAudit, everyone_reachable, key_directory


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await open_store(f"sqlite:///{tmp_path / 'gateway.db'}")
    yield store
    await store.close()


def make_log(
    store: Store, tmp_path: Path, audit: Any = None, interval: float = 60
) -> KeyTransparency:
    return KeyTransparency(
        store, load_head_signer(tmp_path), head_interval_s=interval,
        audit_events=audit or RecordingAudit(), retired_keys=retired_public_keys(tmp_path),
    )  # fmt: skip


async def test_a_platform_users_key_change_is_logged_as_a_new_version(
    store: Store, tmp_path: Path
) -> None:
    log = make_log(store, tmp_path)
    wanda = [OlmParty()]

    async def platform_keys(uri: str) -> ClaimedBundle:
        party = wanda[0]
        return ClaimedBundle(
            user=uri, identity_key=party.identity_key, signing_key=party.signing_key,
            one_time_key=None, fallback_key=None,
        )  # fmt: skip

    keys = key_directory(
        store, platform_keys=platform_keys, consent=everyone_reachable, transparency=log
    )
    uri = "mimi://whatsapp/u/4915100000001"
    await keys.claim("acme", uri)
    await keys.claim("acme", uri)  # seen again, unchanged: no leaf
    wanda[0] = OlmParty()  # the user reinstalled WhatsApp
    claimed = await keys.claim("acme", uri)
    history = await log.history(uri)
    assert history is not None
    versions = [parse_leaf(v["leaf"]) for v in history["versions"]]
    assert [(v.version, v.identity_key) for v in versions] == [
        (1, versions[0].identity_key), (2, claimed.identity_key),
    ]  # fmt: skip
    proof = await log.proof_for(uri, claimed.identity_key, claimed.signing_key)
    assert proof is not None
    problem, _, _ = inclusion_problem(
        uri, claimed.identity_key, claimed.signing_key, proof, keyring([log.signer.public])
    )
    assert problem is None
    assert await log.proof_for(uri, OlmParty().identity_key, claimed.signing_key) is None


async def test_heads_on_the_interval_at_shutdown_and_audited(store: Store, tmp_path: Path) -> None:
    audit = RecordingAudit()
    log = make_log(store, tmp_path, audit)
    await log._tick()  # an empty log: nothing to sign
    await log.stop()
    assert audit.events == []
    keys = key_directory(store, transparency=log)
    await keys.publish("acme", "bob", OlmParty().key_bundle(1))
    await log._tick()
    await log._tick()  # a fresh head of the same tree: not signed again
    assert [a for a, _ in audit.events] == ["kt.head_signed"]
    await keys.publish("acme", "carol", OlmParty().key_bundle(1))
    await log.stop()  # the last head covers the last change
    head = await kt_store.latest_head(store)
    assert head is not None and head.tree_size == 2
    assert [a for a, _ in audit.events] == ["kt.head_signed", "kt.head_signed"]
    await log.stop()  # nothing new: no head
    assert len(audit.events) == 2


async def test_consistency_sizes_are_checked(store: Store, tmp_path: Path) -> None:
    log = make_log(store, tmp_path)
    assert await log.consistency(0, 0) == []
    with pytest.raises(ValidationFailed) as caught:
        await log.consistency(0, 1)
    assert caught.value.field == "to"
    keys = key_directory(store, transparency=log)
    await keys.publish("acme", "bob", OlmParty().key_bundle(1))
    with pytest.raises(ValidationFailed) as caught:
        await log.consistency(2, 1)
    assert caught.value.field == "from"


def test_rotation_keeps_the_old_public_key_listed(tmp_path: Path) -> None:
    first = load_head_signer(tmp_path)
    old, new = rotate_key(tmp_path)
    assert old == first.key_id and new != old
    assert load_head_signer(tmp_path).key_id == new
    assert retired_public_keys(tmp_path) == [first.public_b64]
    assert (tmp_path / "kt-signing.key").stat().st_mode & 0o077 == 0
