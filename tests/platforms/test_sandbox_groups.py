"""The sandbox platforms in groups (DESIGN §4.10): real store (both backends), real vodozemac.

A third-party member is an OlmParty with the SDK's GroupCrypto; the gateway's group service is
`FakeGroupSink`, which records what the sandbox's members share and send.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
import vodozemac

from gateway.crypto import OlmCiphertext, OlmParty
from gateway.errors import UnknownRecipient
from gateway.platforms.base import (
    ClaimedBundle,
    GroupOutgoing,
    Inbound,
    PermanentDelivery,
    RetryableDelivery,
    SignedOneTimeKey,
    Uplink,
)
from gateway.platforms.sandbox import SandboxPlatform
from gateway.platforms.sandbox_state import SandboxState
from gateway.sdk.groups import GroupCrypto
from gateway.store import Store

KEY = bytes(range(32))
BOB = "mimi://acme/u/bob"
GROUP = "mimi://whatsapp/g/G1"


def mimi_text(text: str) -> dict[str, Any]:
    content = base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()
    part = {"cardinality": "single", "contentType": "text/plain;charset=utf-8", "content": content}
    return {"nestedPart": part}


class FakeGroupSink:
    """Stands for the gateway's group service: keeps groups, records shares and messages."""

    def __init__(self) -> None:
        self.groups: dict[str, dict[str, Any]] = {}
        self.shares: list[dict[str, Any]] = []
        self.messages: list[dict[str, Any]] = []

    async def create_group(
        self, *, native_id: str, service: str, creator: str, name: str, members: list[str]
    ) -> dict[str, Any]:
        if any(m.endswith("/u/nobody") for m in members):
            raise UnknownRecipient("No such user.", field="$.members[0]")
        uri = f"mimi://{service}/g/{native_id}"
        roles = [{"uri": creator, "role": "admin"}]
        roles += [{"uri": m, "role": "member"} for m in members]
        state = {"group": uri, "service": service, "name": name, "members": roles, "epoch": 1}
        self.groups[uri] = state
        return state

    async def share_room_keys(self, **share: Any) -> None:
        self.shares.append(share)

    async def send_group_message(self, **message: Any) -> str:
        self.messages.append(message)
        return f"gm_{len(self.messages)}"

    async def group_state(self, group: str) -> dict[str, Any] | None:
        return self.groups.get(group)


class ThirdParty:
    """Third-party users with Olm accounts; `claim` is the key directory's claim."""

    def __init__(self) -> None:
        self.parties: dict[str, OlmParty] = {}

    def add(self, uri: str) -> OlmParty:
        party = self.parties[uri] = OlmParty()
        return party

    async def claim(self, uri: str) -> ClaimedBundle | None:
        party = self.parties.get(uri)
        if party is None:
            return None
        bundle = party.key_bundle(1)
        ((key_id, otk),) = bundle.one_time_keys.items()
        return ClaimedBundle(
            user=uri, identity_key=bundle.identity_key, signing_key=bundle.signing_key,
            one_time_key=SignedOneTimeKey(key_id=key_id, key=otk.key, signature=otk.signature),
            fallback_key=None,
        )  # fmt: skip


class Relayed:
    def __init__(self) -> None:
        self.items: list[Inbound] = []

    async def receive(self, item: Inbound) -> str:
        self.items.append(item)
        return "gw_1"


@pytest.fixture
def sink() -> FakeGroupSink:
    return FakeGroupSink()


@pytest.fixture
def third() -> ThirdParty:
    return ThirdParty()


@pytest.fixture
async def sandbox(
    store: Store, sink: FakeGroupSink, third: ThirdParty
) -> AsyncIterator[SandboxPlatform]:
    async def consent(uri: str, clients: Any) -> None:
        return None

    platform = SandboxPlatform(
        SandboxState(store, KEY), inbound=Relayed(), third_party_keys=third.claim,
        set_consent=consent, groups=sink,
    )  # fmt: skip
    yield platform
    await platform.close()


def item(kind: Any, id: str, payload: dict[str, Any], **over: Any) -> GroupOutgoing:
    fields = {
        "id": id, "kind": kind, "service": "whatsapp", "group": GROUP, "sender": BOB,
        "recipient": "mimi://whatsapp/u/15550001", "sent_at": 1_700_000_000_000,
        "payload": payload,
    } | over  # fmt: skip
    return GroupOutgoing(**fields)


async def share_from(
    sandbox: SandboxPlatform, party: OlmParty, member: str, plaintext: bytes
) -> dict[str, Any]:
    """An Olm message from `party` to the sandbox member's claimed bundle."""
    bundle = await sandbox.claim_key_bundle(member)
    assert bundle is not None and bundle.one_time_key is not None
    olm = party.encrypt(bundle.identity_key, plaintext, one_time_key=bundle.one_time_key.key)
    return olm.to_wire()


def whatsapp_message(envelope: dict[str, Any]) -> dict[str, Any]:
    return envelope["entry"][0]["changes"][0]["value"]["messages"][0]


async def test_a_room_key_then_a_megolm_message_reach_the_inbox_as_a_whatsapp_group_message(
    sandbox: SandboxPlatform, store: Store
) -> None:
    wa = await sandbox.create_user("whatsapp", "15550001", "W", "all")
    bob = OlmParty()
    crypto = GroupCrypto(bob.identity_key)
    text = msgspec.json.encode({"type": "text", "text": {"body": "hello group"}})
    encrypted, share = crypto.encrypt(GROUP, 1, text)
    assert share is not None
    wire = await share_from(sandbox, bob, wa, share)
    key_item = item("room_key", "k1", {"session_id": encrypted["session_id"], "encrypted": wire})
    await sandbox.deliver_group(key_item)
    assert await sandbox.inbox(wa) == []  # a room key shows nothing
    await sandbox.deliver_group(item("group_message", "m1", {"encrypted": encrypted}))
    await sandbox.deliver_group(key_item)  # redeliveries are recognised
    await sandbox.deliver_group(item("group_message", "m1", {"encrypted": encrypted}))
    inbox = await sandbox.inbox(wa)
    assert len(inbox) == 1
    envelope = inbox[0]["payload"]
    assert envelope["object"] == "whatsapp_business_account"
    message = whatsapp_message(envelope)
    assert message["group_id"] == "G1"
    assert message["text"]["body"] == "hello group"
    # The session is kept durably, pickled: a fresh platform on the same store decrypts too.
    again = SandboxState(store, KEY)
    session = await again.inbound_session(wa, GROUP, encrypted["session_id"])
    assert session is not None
    next_text = msgspec.json.encode({"type": "text", "text": {"body": "2"}})
    second, _ = crypto.encrypt(GROUP, 1, next_text)
    body = vodozemac.MegolmMessage.from_bytes(base64.b64decode(second["body"]))
    assert b'"2"' in bytes(session.decrypt(body).plaintext)
    rows = await store.fetch("SELECT pickle FROM sandbox_group_inbound")
    assert all(encrypted["session_id"] not in r["pickle"] for r in rows)


async def test_a_plaintext_group_message_of_an_optional_hub_reaches_the_inbox(
    sandbox: SandboxPlatform,
) -> None:
    ms = await sandbox.create_user("messenger", "m1", "M", "all")
    native = {"native": [{"text": "plain"}]}
    group = "mimi://messenger/g/T9"
    await sandbox.deliver_group(
        item("group_message", "p1", native, service="messenger", group=group, recipient=ms)
    )
    (entry,) = await sandbox.inbox(ms)
    messaging = entry["payload"]["entry"][0]["messaging"][0]
    assert messaging["thread"] == {"id": "T9", "thread_type": "GROUP"}
    assert messaging["message"]["text"] == "plain"


async def test_a_membership_change_reaches_the_inbox_and_is_remembered(
    sandbox: SandboxPlatform,
) -> None:
    wa = await sandbox.create_user("whatsapp", "15550001", "W", "all")
    members = [{"uri": wa, "role": "admin"}, {"uri": BOB, "role": "member"}]
    change = {"by": wa, "added": [BOB], "removed": [], "epoch": 2, "members": members}
    await sandbox.deliver_group(item("group_membership", "c1", change, sender=wa))
    (entry,) = await sandbox.inbox(wa)
    value = entry["payload"]["entry"][0]["changes"][0]
    assert value["field"] == "group_participants_update"
    (group,) = value["value"]["groups"]
    assert group["type"] == "group_participants_add" and group["group_id"] == "G1"
    assert len(group["added_participants"]) == 1
    assert await sandbox.state.group_view(wa, GROUP) == {"epoch": 2, "members": members}


async def test_a_member_sends_shares_a_session_per_epoch_and_members_read_it(
    sandbox: SandboxPlatform, sink: FakeGroupSink, third: ThirdParty
) -> None:
    wa = await sandbox.create_user("whatsapp", "15550001", "W", "all")
    wa2 = await sandbox.create_user("whatsapp", "15550002", "V", "all")
    bob = third.add(BOB)
    state = await sink.create_group(
        native_id="G1", service="whatsapp", creator=wa, name="g", members=[BOB, wa2]
    )
    assert state["group"] == GROUP
    assert await sandbox.send(wa, GROUP, mimi_text("hi all")) == "gm_1"
    (shared,) = sink.shares
    assert shared["group"] == GROUP and shared["sender"] == wa
    assert [s["to"] for s in shared["shares"]] == [BOB, wa2]
    (sent,) = sink.messages
    encrypted = sent["payload"]["encrypted"]
    assert encrypted["protocol"] == "megolm.v1"
    assert encrypted["session_id"] == shared["session_id"]
    assert encrypted["sender_key"] == (await sandbox.state.keys(wa)).identity_key  # type: ignore[union-attr]
    # The third-party member decrypts its share and the message.
    to_bob = shared["shares"][0]["encrypted"]
    plaintext = bob.decrypt(
        OlmCiphertext.from_wire(to_bob["type"], to_bob["body"], to_bob["sender_key"])
    )
    crypto = GroupCrypto(bob.identity_key)
    assert crypto.import_room_key(GROUP, plaintext) == shared["session_id"]
    assert msgspec.json.decode(crypto.decrypt(GROUP, encrypted)) == {  # type: ignore[arg-type]
        "type": "text", "text": {"body": "hi all"}
    }  # fmt: skip
    # The sandbox member takes its share and the message in, as the gateway delivers them.
    to_wa2 = shared["shares"][1]["encrypted"]
    key_payload = {"session_id": shared["session_id"], "encrypted": to_wa2}
    over = {"sender": wa, "recipient": wa2}
    await sandbox.deliver_group(item("room_key", "k1", key_payload, **over))
    await sandbox.deliver_group(item("group_message", "m1", sent["payload"], **over))
    (entry,) = await sandbox.inbox(wa2)
    assert whatsapp_message(entry["payload"])["text"]["body"] == "hi all"
    # Same epoch: the same session, no new share.
    await sandbox.send(wa, GROUP, mimi_text("again"))
    assert len(sink.shares) == 1
    assert sink.messages[1]["payload"]["encrypted"]["session_id"] == shared["session_id"]
    # A membership change: a new session, shared with the current members only.
    sink.groups[GROUP] = state | {"epoch": 2, "members": state["members"][:2]}
    await sandbox.send(wa, GROUP, mimi_text("after"))
    assert len(sink.shares) == 2
    assert [s["to"] for s in sink.shares[1]["shares"]] == [BOB]
    new_session = sink.shares[1]["session_id"]
    assert new_session != shared["session_id"]
    assert sink.messages[2]["payload"]["encrypted"]["session_id"] == new_session


async def test_a_send_to_a_group_refuses_strangers_and_unknown_groups(
    sandbox: SandboxPlatform, sink: FakeGroupSink
) -> None:
    from gateway.errors import Forbidden, NotFound

    wa = await sandbox.create_user("whatsapp", "15550001", "W", "all")
    wa2 = await sandbox.create_user("whatsapp", "15550002", "V", "all")
    with pytest.raises(NotFound):
        await sandbox.send(wa, GROUP, mimi_text("x"))
    await sink.create_group(native_id="G1", service="whatsapp", creator=wa, name="g", members=[])
    with pytest.raises(Forbidden) as refused:
        await sandbox.send(wa2, GROUP, mimi_text("x"))
    assert refused.value.field == "$.from"
    assert sink.shares == [] and sink.messages == []


async def test_unknown_session_unknown_user_and_outage(sandbox: SandboxPlatform) -> None:
    wa = await sandbox.create_user("whatsapp", "15550001", "W", "all")
    encrypted, _ = GroupCrypto("k").encrypt(GROUP, 1, b"{}")
    with pytest.raises(PermanentDelivery, match="unknown_session"):
        await sandbox.deliver_group(item("group_message", "m1", {"encrypted": encrypted}))
    stranger = item(
        "group_message", "m2", {"encrypted": encrypted}, recipient="mimi://whatsapp/u/9"
    )
    with pytest.raises(PermanentDelivery, match="unknown_user"):
        await sandbox.deliver_group(stranger)
    sandbox.set_outage("whatsapp", True)
    with pytest.raises(RetryableDelivery, match="platform_unavailable"):
        await sandbox.deliver_group(item("group_message", "m1", {"encrypted": encrypted}))
    assert await sandbox.inbox(wa) == []


@pytest.mark.parametrize(
    "room_key",
    [
        {"group": "mimi://whatsapp/g/OTHER"},
        {"session_id": "not-the-one"},
        {"session_key": "bm90IGEga2V5"},
    ],
)
async def test_a_bad_share_plaintext_is_refused_and_imports_nothing(
    sandbox: SandboxPlatform, room_key: dict[str, str]
) -> None:
    wa = await sandbox.create_user("whatsapp", "15550001", "W", "all")
    bob = OlmParty()
    session = vodozemac.GroupSession()
    good = {"group": GROUP, "session_id": session.session_id,
            "session_key": session.session_key.to_base64()}  # fmt: skip
    plaintext = msgspec.json.encode({"room_key": good | room_key})
    wire = await share_from(sandbox, bob, wa, plaintext)
    key_item = item("room_key", "k1", {"session_id": session.session_id, "encrypted": wire})
    with pytest.raises(PermanentDelivery, match="bad_room_key"):
        await sandbox.deliver_group(key_item)
    await sandbox.deliver_group(key_item)  # taken in once: a redelivery changes nothing
    assert await sandbox.state.inbound_session(wa, GROUP, session.session_id) is None
    # The Olm session from bob was kept: bob's next message decrypts.
    party, _ = await sandbox.state.party(wa)
    assert party.has_session(bob.identity_key)


async def test_an_undecryptable_room_key_is_permanent(sandbox: SandboxPlatform) -> None:
    await sandbox.create_user("whatsapp", "15550001", "W", "all")
    wire = {"protocol": "olm.v1", "type": 0, "body": "AAAA", "sender_key": OlmParty().identity_key}
    with pytest.raises(PermanentDelivery, match="undecryptable"):
        await sandbox.deliver_group(item("room_key", "k1", {"session_id": "s", "encrypted": wire}))


async def test_the_uplink_forwards_group_calls_once_bound(sink: FakeGroupSink) -> None:
    uplink = Uplink()
    with pytest.raises(RuntimeError, match="before the group service"):
        await uplink.group_state(GROUP)
    uplink.bind_groups(sink)
    state = await uplink.create_group(
        native_id="G1", service="whatsapp", creator="mimi://whatsapp/u/1", name="g", members=[]
    )
    assert await uplink.group_state(GROUP) == state
    await uplink.share_room_keys(native_id="s", group=GROUP, sender="a", session_id="x", shares=[])
    assert sink.shares == [{"native_id": "s", "group": GROUP, "sender": "a", "session_id": "x",
                            "shares": []}]  # fmt: skip
    sent = await uplink.send_group_message(
        native_id="n", group=GROUP, sender="a", sent_at=1, payload={"content": {}}
    )
    assert sent == "gm_1"
    with pytest.raises(RuntimeError, match="bound already"):
        uplink.bind_groups(sink)


async def test_a_meta_membership_change_is_the_thread_envelope(sandbox: SandboxPlatform) -> None:
    ig = await sandbox.create_user("instagram", "ig1", "I", "all")
    group = "mimi://instagram/g/IG7"
    members = [{"uri": ig, "role": "member"}]
    change = {"by": BOB, "added": [], "removed": [BOB], "epoch": 3, "members": members}
    await sandbox.deliver_group(
        item("group_membership", "c1", change, service="instagram", group=group, recipient=ig)
    )
    (entry,) = await sandbox.inbox(ig)
    assert entry["payload"]["object"] == "instagram"
    event = entry["payload"]["entry"][0]["messaging"][0]
    assert event["thread"] == {"id": "IG7", "thread_type": "GROUP"}
    assert event["recipient"] == {"id": "ig1"}
    assert event["group_membership"]["added"] == []
    assert len(event["group_membership"]["removed"]) == 1
    assert await sandbox.state.group_view(ig, group) == {"epoch": 3, "members": members}


async def test_the_sending_session_survives_a_restart(
    sandbox: SandboxPlatform, sink: FakeGroupSink, third: ThirdParty, store: Store
) -> None:
    wa = await sandbox.create_user("whatsapp", "15550001", "W", "all")
    bob = third.add(BOB)
    await sink.create_group(
        native_id="G1", service="whatsapp", creator=wa, name="g", members=[BOB]
    )
    await sandbox.send(wa, GROUP, mimi_text("one"))
    restarted = SandboxPlatform(
        SandboxState(store, KEY), inbound=Relayed(), third_party_keys=third.claim,
        set_consent=sandbox.set_consent, groups=sink,
    )  # fmt: skip
    await restarted.send(wa, GROUP, mimi_text("two"))
    assert len(sink.shares) == 1  # the stored session goes on
    to_bob = sink.shares[0]["shares"][0]["encrypted"]
    crypto = GroupCrypto(bob.identity_key)
    crypto.import_room_key(
        GROUP, bob.decrypt(OlmCiphertext.from_wire(to_bob["type"], to_bob["body"],
                                                   to_bob["sender_key"]))
    )  # fmt: skip
    texts = [crypto.decrypt(GROUP, m["payload"]["encrypted"]) for m in sink.messages]
    assert [msgspec.json.decode(t)["text"]["body"] for t in texts] == ["one", "two"]  # type: ignore[arg-type]
    await restarted.close()
