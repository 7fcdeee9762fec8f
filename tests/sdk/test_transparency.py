"""The SDK checks every claimed key against the key transparency log (DESIGN §4.12)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from gateway.crypto import OlmParty
from gateway.http.app_keys import KEY_DIRECTORY, KEY_TRANSPARENCY, STORE
from gateway.sdk.transparency import KeyTransparencyError, UnpublishedKeyChange
from tests.sdk.conftest import Gateway, SdkFactory

WA_ID = "4915112345678"


def substitute(gateway: Gateway, *, with_genuine_proof: bool) -> OlmParty:
    """Make the gateway hand out keys of its own for every claim (a directory gone rogue)."""
    rogue = OlmParty()
    directory = gateway.app[KEY_DIRECTORY]
    log = gateway.app[KEY_TRANSPARENCY]
    genuine_claim, genuine_proof = directory.claim, log.proof_for
    genuine: dict[str, Any] = {}

    async def claim(client_id: str, target: str, **kw: Any) -> Any:
        claimed = await genuine_claim(client_id, target, **kw)
        genuine[claimed.user] = (claimed.identity_key, claimed.signing_key)
        return msgspec.structs.replace(
            claimed, identity_key=rogue.identity_key, signing_key=rogue.signing_key
        )

    async def proof_for(user: str, identity_key: str, signing_key: str) -> Any:
        if with_genuine_proof:  # the real leaf's proof, attached to the rogue keys
            return await genuine_proof(user, *genuine[user])
        return await genuine_proof(user, identity_key, signing_key)

    directory.claim = claim  # type: ignore[method-assign,assignment]
    log.proof_for = proof_for  # type: ignore[method-assign,assignment]
    return rogue


async def test_a_claimed_key_is_checked_and_the_head_kept(
    gateway: Gateway, onboard_sdk: SdkFactory
) -> None:
    sdk = await onboard_sdk()
    wa = await gateway.sandbox_user(WA_ID, [sdk.client_id])
    await sdk.publish_keys("alice")
    await sdk.send_text("alice", wa, "Hallo")
    head = sdk.kt.last_head()
    assert head is not None and head.tree_size >= 1
    offer = await gateway.admin("GET", "/.well-known/dma-interop")
    assert head.key_id == gateway.app[KEY_TRANSPARENCY].signer.key_id
    assert (
        offer["key_transparency"]["public_key"] == gateway.app[KEY_TRANSPARENCY].signer.public_b64
    )


@pytest.mark.parametrize("with_genuine_proof", [False, True], ids=["no-proof", "other-leaf"])
async def test_a_substituted_key_is_refused(
    gateway: Gateway, onboard_sdk: SdkFactory, with_genuine_proof: bool
) -> None:
    sdk = await onboard_sdk()
    wa = await gateway.sandbox_user(WA_ID, [sdk.client_id])
    await sdk.publish_keys("alice")
    substitute(gateway, with_genuine_proof=with_genuine_proof)
    with pytest.raises(KeyTransparencyError, match=r"refusing the keys|without a transparency"):
        await sdk.send_text("alice", wa, "for Wanda only")
    assert sdk.state.peer_key(wa) is None  # nothing was encrypted to the rogue key
    assert await gateway.inbox(wa) == []


async def test_a_head_signed_by_another_key_is_refused(
    gateway: Gateway, onboard_sdk: SdkFactory
) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from gateway.crypto.transparency import HeadSigner

    sdk = await onboard_sdk()
    wa = await gateway.sandbox_user(WA_ID, [sdk.client_id])
    gateway.app[KEY_TRANSPARENCY].signer = HeadSigner(Ed25519PrivateKey.generate())
    with pytest.raises(KeyTransparencyError, match="unknown key"):
        await sdk.send_text("alice", wa, "hi")


async def test_a_rewritten_log_is_refused(gateway: Gateway, onboard_sdk: SdkFactory) -> None:
    sdk = await onboard_sdk()
    wa = await gateway.sandbox_user(WA_ID, [sdk.client_id])
    await sdk.send_text("alice", wa, "first")
    seen = sdk.kt.last_head()
    assert seen is not None and seen.tree_size == 1

    async def rewrite(tx: Any) -> None:  # the gateway rewrites the log's first leaf
        await tx.execute("UPDATE kt_leaves SET leaf_hash = $1 WHERE leaf_index = 0", b"\0" * 32)
        await tx.execute("DELETE FROM kt_heads")

    await gateway.app[STORE].write("rewrite", rewrite)
    log = gateway.app[KEY_TRANSPARENCY]
    log.tree = type(log.tree)()  # forget the cached hashes: re-read the rewritten log
    other = await gateway.sandbox_user("4915100000002", [sdk.client_id])
    with pytest.raises(KeyTransparencyError, match="rewritten or forked"):
        await sdk.send_text("alice", other, "second")


async def test_an_older_key_version_is_refused(gateway: Gateway, onboard_sdk: SdkFactory) -> None:
    acme = await onboard_sdk("acme")
    await acme.publish_keys("bob")
    bob = acme.uri("bob")
    acme.kt.db.execute("INSERT INTO kt_peer_versions (peer_uri, version) VALUES (?, 5)", (bob,))
    with pytest.raises(KeyTransparencyError, match="older than one seen"):
        await acme._session_key(acme.uri("alice"), bob)


async def test_monitoring_reports_keys_the_provider_did_not_publish(
    gateway: Gateway, onboard_sdk: SdkFactory
) -> None:
    from gateway.crypto import KeyBundle

    sdk = await onboard_sdk()
    await sdk.publish_keys("alice")
    await sdk.publish_keys("alice")  # a replenishment: same keys, no new version
    alice = sdk.uri("alice")
    heard: list[UnpublishedKeyChange] = []
    sdk.kt.listeners.append(heard.append)
    assert await sdk.kt.monitor(alice) == []
    # Someone with the gateway's hands publishes keys of its own in alice's name.
    rogue = OlmParty()
    bundle = msgspec.convert(msgspec.to_builtins(rogue.key_bundle(1)), KeyBundle)
    await gateway.app[KEY_DIRECTORY].publish(sdk.client_id, "alice", bundle)
    alerts = await sdk.kt.monitor(alice)
    assert [(a.user, a.version, a.identity_key) for a in alerts] == [
        (alice, 2, rogue.identity_key)
    ]
    assert heard == alerts
    assert await sdk.kt.monitor(alice) == []  # reported once
    await sdk.publish_keys("carol")
    assert await sdk.kt.monitor(sdk.uri("carol")) == []


async def test_the_event_iterator_reports_keys_the_provider_did_not_publish(
    gateway: Gateway, onboard_sdk: SdkFactory
) -> None:
    from gateway.crypto import KeyBundle
    from gateway.sdk import Notice

    sdk = await onboard_sdk()
    await sdk.publish_keys("alice")
    quiet = [e async for e in sdk.events(wait=0.2, stop_when_idle=True)]
    assert [e for e in quiet if isinstance(e, Notice) and e.type == "unpublished_key_change"] == []
    rogue = OlmParty()
    bundle = msgspec.convert(msgspec.to_builtins(rogue.key_bundle(1)), KeyBundle)
    await gateway.app[KEY_DIRECTORY].publish(sdk.client_id, "alice", bundle)
    found = [
        e async for e in sdk.events(wait=0.2, stop_when_idle=True)
        if isinstance(e, Notice) and e.type == "unpublished_key_change"
    ]  # fmt: skip
    assert [(n.raw["user"], n.raw["identity_key"]) for n in found] == [
        (sdk.uri("alice"), rogue.identity_key)
    ]
