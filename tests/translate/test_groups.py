"""Group payloads: the real WhatsApp group fixtures and the extended Meta envelopes round-trip."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.content import SinglePart
from gateway.translate import (
    MemoryMessageRefs,
    MemoryUserDirectory,
    NeutralEvent,
    instagram,
    messenger,
)
from gateway.translate.errors import TranslationError
from gateway.translate.groups import (
    GroupEvent,
    Membership,
    group_uri,
    meta_group_webhook,
    meta_webhook_to_group_events,
    split_group_uri,
    whatsapp_group_send_from_neutral,
    whatsapp_group_send_to_neutral,
    whatsapp_group_webhooks,
    whatsapp_webhook_to_group_events,
)
from gateway.translate.neutral import Envelope, receipt_event
from gateway.translate.whatsapp import webhook_to_neutral
from tests.content.paths import NATIVE_FIXTURES
from tests.translate.helpers import THIRD_PARTY, same_salt

GROUP_FIXTURES = NATIVE_FIXTURES / "groups"
WEBHOOKS = sorted(
    p for p in GROUP_FIXTURES.glob("whatsapp_webhook_*.json") if "unsupported" not in p.name
)
SENDER = "mimi://whatsapp/u/16505550000"


def _load(name: str) -> dict[str, Any]:
    return json.loads((GROUP_FIXTURES / name).read_text())


def test_group_fixtures_have_sources() -> None:
    paths = sorted(GROUP_FIXTURES.glob("*.json"))
    assert len(paths) >= 6
    for path in paths:
        assert path.with_suffix(".src.txt").exists(), path.name


def _same(a: GroupEvent, b: GroupEvent) -> bool:
    if a.event is not None and b.event is not None:
        return (
            a.group == b.group and a.member == b.member and same_salt(a.event, b.event) == b.event
        )
    return a == b


@pytest.mark.parametrize("path", WEBHOOKS, ids=lambda p: p.stem)
def test_whatsapp_group_webhooks_round_trip(path: Path, refs: MemoryMessageRefs) -> None:
    items = whatsapp_webhook_to_group_events(json.loads(path.read_text()), refs=refs)
    assert items
    for item in items:
        back = [
            again
            for doc in whatsapp_group_webhooks(item, refs=refs)
            for again in whatsapp_webhook_to_group_events(json.loads(json.dumps(doc)), refs=refs)
        ]
        assert len(back) == 1 and _same(back[0], item)


def test_whatsapp_group_text_values(refs: MemoryMessageRefs) -> None:
    (item,) = whatsapp_webhook_to_group_events(
        _load("whatsapp_webhook_group_text.json"), refs=refs
    )
    assert (
        item.group == "mimi://whatsapp/g/HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA"
    )
    assert item.member == "mimi://whatsapp/u/15550783881"
    event = item.event
    assert event is not None and event.envelope.sender == "mimi://whatsapp/u/16505551234"
    assert event.envelope.sent_at == 1744344496000 and event.sender_name == "Tiago Mingo"
    assert event.content is not None and event.content.nested_part == SinglePart(
        content_type="text/plain;charset=utf-8", content=b"What does everyone think about this?"
    )


def test_whatsapp_group_membership_values() -> None:
    (add,) = whatsapp_webhook_to_group_events(
        _load("whatsapp_webhook_group_participants_add.json")
    )
    assert add.group == "mimi://whatsapp/g/GROUP_ID_456" and add.membership == Membership(
        sent_at=1739321024000, added=("mimi://whatsapp/u/16505551234",)
    )
    (rem,) = whatsapp_webhook_to_group_events(
        _load("whatsapp_webhook_group_participants_remove.json")
    )  # an unquoted timestamp, `input` phone numbers
    assert rem.membership == Membership(
        sent_at=1739321024000,
        removed=("mimi://whatsapp/u/16505551234", "mimi://whatsapp/u/16505554321"),
        initiated_by="business",
    )


def test_whatsapp_group_status_values() -> None:
    (item,) = whatsapp_webhook_to_group_events(_load("whatsapp_webhook_group_status.json"))
    assert item.group == "mimi://whatsapp/g/fowefinoewcnw"
    event = item.event
    assert event is not None and event.receipt is not None and event.receipt.status == "read"
    assert event.envelope.sender == "mimi://whatsapp/u/16505551234"


def test_whatsapp_group_sent_status_is_the_groups() -> None:
    group = "mimi://whatsapp/g/G1"
    member = "mimi://whatsapp/u/4915112345678"
    event = receipt_event("abc", "sent", sender=group, recipient=member, sent_at=1_700_000_000_000)
    (doc,) = whatsapp_group_webhooks(GroupEvent(group=group, member=member, event=event))
    status = doc["entry"][0]["changes"][0]["value"]["statuses"][0]
    assert status["recipient_id"] == "G1" and "recipient_participant_id" not in status
    (back,) = whatsapp_webhook_to_group_events(doc)
    assert back.event == event


def test_one_to_one_items_are_not_group_items() -> None:
    doc = json.loads((NATIVE_FIXTURES / "whatsapp_webhook_text.json").read_text())
    assert whatsapp_webhook_to_group_events(doc) == []


def test_unsupported_group_message_names_its_field() -> None:
    with pytest.raises(TranslationError) as caught:
        whatsapp_webhook_to_group_events(_load("whatsapp_webhook_group_unsupported.json"))
    assert caught.value.field.startswith("entry[0].changes[0].value.messages[0]")


def test_membership_with_adds_and_removes_is_two_webhooks() -> None:
    m = Membership(
        sent_at=1_700_000_000_000,
        added=("mimi://whatsapp/u/111",),
        removed=("mimi://whatsapp/u/222",),
        by="mimi://whatsapp/u/333",
    )
    item = GroupEvent(group="mimi://whatsapp/g/G", member="mimi://whatsapp/u/333", membership=m)
    docs = whatsapp_group_webhooks(item)
    kinds = [d["entry"][0]["changes"][0]["value"]["groups"][0]["type"] for d in docs]
    assert kinds == ["group_participants_add", "group_participants_remove"]
    assert all(d["entry"][0]["changes"][0]["field"] == "group_participants_update" for d in docs)
    back = [b for d in docs for b in whatsapp_webhook_to_group_events(d)]
    assert [b.membership.added if b.membership else None for b in back] == [m.added, ()]
    assert back[1].membership is not None and back[1].membership.removed == m.removed


def test_whatsapp_group_send_round_trips(refs: MemoryMessageRefs) -> None:
    doc = _load("whatsapp_send_group_text.json")
    event = whatsapp_group_send_to_neutral(doc, sender=SENDER, id="s1", sent_at=1, refs=refs)
    assert event.envelope.recipient == (
        "mimi://whatsapp/g/Y2FwaV9ncm91cDoxNzA1NTU1MDEzOToxMjAzNjM0MDQ2OTQyMzM4MjAZD"
    )
    (body,) = whatsapp_group_send_from_neutral(event, refs=refs)
    assert body["recipient_type"] == "group" and body["to"] == doc["to"]
    again = whatsapp_group_send_to_neutral(body, sender=SENDER, id="s1", sent_at=1, refs=refs)
    assert same_salt(again, event) == event
    with pytest.raises(TranslationError):
        whatsapp_group_send_to_neutral(doc | {"recipient_type": "individual"}, sender=SENDER,
                                       id="s", sent_at=1)  # fmt: skip


@pytest.mark.parametrize(
    "translator", [messenger.TRANSLATOR, instagram.TRANSLATOR], ids=["messenger", "instagram"]
)
def test_meta_thread_envelopes_round_trip(
    translator: Any, refs: MemoryMessageRefs, users: MemoryUserDirectory
) -> None:
    service = translator.service
    group = group_uri(service, "T1")
    member = f"mimi://{service}/u/6354821976152837"
    env = Envelope(id="m_1", sender=THIRD_PARTY, recipient=member, sent_at=1_700_000_000_123)
    text = translator.native_to_content({"text": "hello group"}, refs=refs)
    item = GroupEvent(group=group, member=member, event=NeutralEvent(envelope=env, content=text))
    doc = meta_group_webhook(translator, item, refs=refs)
    messaging = doc["entry"][0]["messaging"][0]
    assert messaging["thread"] == {"id": "T1", "thread_type": "GROUP"}
    (back,) = meta_webhook_to_group_events(
        translator, json.loads(json.dumps(doc)), users=users, refs=refs
    )
    assert _same(back, item)
    # a 1:1 parser still reads the message, the group being an extension it ignores
    assert len(translator.webhook_to_neutral(doc, refs=refs)) == 1
    change = Membership(sent_at=5, added=(member,), removed=(), by=THIRD_PARTY)
    joined = GroupEvent(group=group, member=member, membership=change)
    (back,) = meta_webhook_to_group_events(
        translator, meta_group_webhook(translator, joined), users=users
    )
    assert back == joined
    without_by = GroupEvent(group=group, member=member, membership=Membership(sent_at=5))
    (back,) = meta_webhook_to_group_events(translator, meta_group_webhook(translator, without_by))
    assert back == without_by


def test_group_uris() -> None:
    assert split_group_uri(group_uri("whatsapp", "abc")) == ("whatsapp", "abc")
    for bad in ("mimi://whatsapp/u/1", "mimi://other/g/x", "mimi://whatsapp/g/a/b", "x"):
        with pytest.raises(TranslationError):
            split_group_uri(bad)
    with pytest.raises(TranslationError):
        group_uri("whatsapp", "")


def test_plain_webhook_parser_is_unchanged_for_groups() -> None:
    # the 1:1 parser reads a group message as a plain message; group traffic needs the group parser
    assert webhook_to_neutral(_load("whatsapp_webhook_group_text.json"))
