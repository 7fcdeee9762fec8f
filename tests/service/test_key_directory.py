"""Key directory events: keys_low to the owner, identity_changed to the user's contacts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.crypto import OlmParty
from gateway.platforms.base import ClaimedBundle, SignedOneTimeKey
from gateway.store import Store, Tx, open_store
from tests.service.fakes import RecordingQueue, everyone_reachable, key_directory


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await open_store(f"sqlite:///{tmp_path / 'gateway.db'}")
    yield store
    await store.close()


async def test_keys_low_is_sent_once_below_the_threshold_and_when_out(store: Store) -> None:
    queue = RecordingQueue()
    keys = key_directory(store, low_threshold=3, events=queue, consent=everyone_reachable)
    bob = OlmParty()
    await keys.publish("acme", "bob", bob.key_bundle(5, fallback=True))
    counts = []
    for _ in range(7):
        claimed = await keys.claim("other", "mimi://acme/u/bob")
        counts.append(claimed.one_time_key is not None)
    assert counts == [True] * 5 + [False] * 2
    assert queue.events == [
        ("acme", {"type": "keys_low", "user": "mimi://acme/u/bob", "one_time_key_count": 2}),
        ("acme", {"type": "keys_low", "user": "mimi://acme/u/bob", "one_time_key_count": 0}),
    ]


async def test_a_new_identity_key_tells_the_contacts_and_drops_old_keys(store: Store) -> None:
    queue = RecordingQueue()
    audited: list[tuple[str | None, list[str]]] = []

    async def audit(tx: Tx, action: str | None, subjects: Any) -> None:
        audited.append((action, list(subjects)))

    keys = key_directory(store, events=queue, consent=everyone_reachable)
    await keys.publish("acme", "bob", OlmParty().key_bundle(4, fallback=True))
    await keys.claim("p1", "mimi://acme/u/bob")
    await keys.claim("p2", "mimi://acme/u/bob")
    await keys.claim("acme", "mimi://acme/u/bob")
    assert queue.events == []
    fresh = OlmParty()
    result = await keys.publish("acme", "bob", fresh.key_bundle(1), audit=audit)
    assert result.identity_changed
    assert result.one_time_key_count == 1
    assert result.fallback_key is False
    event = {
        "type": "identity_changed",
        "user": "mimi://acme/u/bob",
        "identity_key": fresh.identity_key,
        "signing_key": fresh.signing_key,
    }
    # The owner itself is not told: it made the change.
    assert queue.events == [("p1", event), ("p2", event)]
    assert audited == [
        ("keys.identity_changed", ["mimi://acme/u/bob"]),
        (None, ["mimi://acme/u/bob"]),
    ]
    claimed = await keys.claim("p1", "mimi://acme/u/bob")
    assert claimed.identity_key == fresh.identity_key
    assert claimed.one_time_key is not None
    # Same identity again: no event.
    await keys.publish("acme", "bob", fresh.key_bundle(1))
    assert [e["type"] for _, e in queue.events[2:]] == ["keys_low"]


async def test_platform_users_come_from_the_connector_after_consent(store: Store) -> None:
    asked: list[str] = []
    wa = OlmParty()
    wa_bundle = wa.key_bundle(1)
    ((kid, otk),) = wa_bundle.one_time_keys.items()

    async def claim_key_bundle(uri: str) -> ClaimedBundle | None:
        asked.append(uri)
        if uri != "mimi://whatsapp/u/491":
            return None
        return ClaimedBundle(
            user=uri,
            identity_key=wa.identity_key,
            signing_key=wa.signing_key,
            one_time_key=SignedOneTimeKey(key_id=kid, key=otk.key, signature=otk.signature),
            fallback_key=None,
        )

    async def allows(uri: str, client_id: str) -> bool:
        return client_id == "acme"

    keys = key_directory(
        store, max_one_time_keys=10, platform_keys=claim_key_bundle, consent=allows
    )
    claimed = await keys.claim("acme", "mimi://whatsapp/u/491")
    assert claimed.identity_key == wa.identity_key
    assert claimed.one_time_key is not None and claimed.one_time_key.key_id == kid
    from gateway.errors import UnknownRecipient

    with pytest.raises(UnknownRecipient):
        await keys.claim("stranger", "mimi://whatsapp/u/491")
    with pytest.raises(UnknownRecipient):
        await keys.claim("acme", "mimi://whatsapp/u/000")
    # The connector is never asked on behalf of a provider without consent.
    assert asked == ["mimi://whatsapp/u/491", "mimi://whatsapp/u/000"]
    rows = await store.fetch("SELECT user_uri, client_id FROM e2ee_contacts")
    assert [tuple(r) for r in rows] == [("mimi://whatsapp/u/491", "acme")]
