"""Messenger and Instagram: limits, degradations, Send API, receipts, malformed input."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.content import (
    Disposition,
    ExternalPart,
    MimiContent,
    MultiPart,
    NullPart,
    PartSemantics,
    SinglePart,
)
from gateway.translate import TRANSLATORS, MemoryMessageRefs, TranslationError, receipt_event
from gateway.translate.common import TEXT_PLAIN
from gateway.translate.limits import MB
from gateway.translate.meta import MetaTranslator
from tests.translate.helpers import (
    KNOWN_IDS,
    PLATFORM_USER,
    THIRD_PARTY,
    message,
    new_users,
    same_salt,
)

MESSENGER = TRANSLATORS["messenger"]
INSTAGRAM = TRANSLATORS["instagram"]
META = pytest.mark.parametrize("service", ["messenger", "instagram"])
TEXT = SinglePart(content_type=TEXT_PLAIN, content=b"hello")


def _text(text: str) -> MimiContent:
    return MimiContent(nested_part=SinglePart(content_type=TEXT_PLAIN, content=text.encode()))


def _media(content_type: str, size: int, **fields: Any) -> MimiContent:
    part = ExternalPart(content_type=content_type, url="https://x/m", size=size, **fields)
    return MimiContent(nested_part=part)


def test_text_limits_count_in_each_service_unit() -> None:
    assert MESSENGER.content_to_native(_text("é" * 2000)) == [{"text": "é" * 2000}]
    with pytest.raises(TranslationError) as err:
        MESSENGER.content_to_native(_text("x" * 2001))
    assert err.value.field == "nestedPart.content" and "2000 characters" in err.value.reason
    INSTAGRAM.content_to_native(_text("x" * 1000))
    with pytest.raises(TranslationError) as err:
        INSTAGRAM.content_to_native(_text("é" * 501))  # 1002 UTF-8 bytes
    assert "1000 UTF-8 bytes" in err.value.reason


@pytest.mark.parametrize(
    ("service", "content_type", "size", "ok"),
    [
        ("messenger", "video/mp4", 25 * MB, True),
        ("messenger", "video/mp4", 25 * MB + 1, False),
        ("messenger", "application/pdf", 25 * MB + 1, False),
        ("instagram", "image/png", 8 * MB, True),
        ("instagram", "image/png", 8 * MB + 1, False),
        ("instagram", "audio/mpeg", 25 * MB + 1, False),
    ],
)
def test_attachment_size_limits(service: str, content_type: str, size: int, ok: bool) -> None:
    translator = TRANSLATORS[service]
    if ok:
        translator.content_to_native(_media(content_type, size))
        return
    with pytest.raises(TranslationError) as err:
        translator.content_to_native(_media(content_type, size))
    assert err.value.field == "nestedPart.size" and service in err.value.reason


def test_instagram_image_type_outside_the_list_goes_as_file() -> None:
    (obj,) = INSTAGRAM.content_to_native(_media("image/bmp", 10))
    assert obj["attachment"]["type"] == "file"
    assert INSTAGRAM.native_to_content(obj).nested_part == _media("image/bmp", 10).nested_part


@META
def test_media_keeps_what_the_send_api_lacks(service: str) -> None:
    content = _media(
        "audio/ogg", 99, enc_alg=1, key=b"k" * 16, description="voice", filename="v.ogg"
    )
    (obj,) = TRANSLATORS[service].content_to_native(content)
    assert obj["attachment"] == {"type": "audio", "payload": {"url": "https://x/m"}}
    assert obj["mimi"]["part"]["key"] == "a2tra2tra2tra2tra2traw"
    assert TRANSLATORS[service].native_to_content(obj).nested_part == content.nested_part


@META
def test_process_all_becomes_several_messages(service: str) -> None:
    translator = TRANSLATORS[service]
    body = MultiPart(part_semantics=PartSemantics.PROCESS_ALL, parts=(TEXT, TEXT))
    payload = translator.webhook_from_neutral(message(service, body, name=None))
    mids = [e["message"]["mid"] for e in payload["entry"][0]["messaging"]]
    assert mids == ["m1", "m1.1"]
    assert len(translator.webhook_to_neutral(payload)) == 2


@META
def test_what_the_service_cannot_say_is_a_clear_error(service: str) -> None:
    translator = TRANSLATORS[service]
    unit = MultiPart(part_semantics=PartSemantics.SINGLE_UNIT, parts=(TEXT, TEXT))
    cases = [
        (MimiContent(nested_part=unit), "nestedPart"),
        (
            MimiContent(
                nested_part=SinglePart(content_type="application/geo+json", content=b"{}")
            ),
            "nestedPart.contentType",
        ),
        (
            MimiContent(nested_part=_media("image/png", 1).nested_part, replaces=KNOWN_IDS[0]),
            "nestedPart",
        ),
        (MimiContent(nested_part=TEXT, in_reply_to=b"\x07" * 32), "inReplyTo"),
    ]
    for content, field in cases:
        with pytest.raises(TranslationError) as err:
            translator.content_to_native(content, refs=_refs())
        assert err.value.field == field


def _refs() -> MemoryMessageRefs:
    refs = MemoryMessageRefs()
    for service in ("messenger", "instagram"):
        refs.remember(service, "m_target", KNOWN_IDS[0])
    return refs


def test_unsend_only_on_instagram() -> None:
    delete = MimiContent(nested_part=NullPart(), replaces=KNOWN_IDS[0])
    assert INSTAGRAM.content_to_native(delete, refs=_refs()) == [
        {"mid": "m_target", "is_deleted": True}
    ]
    with pytest.raises(TranslationError) as err:
        MESSENGER.content_to_native(delete, refs=_refs())
    assert err.value.field == "replaces"


@META
def test_reactions_are_sender_actions(service: str) -> None:
    translator = TRANSLATORS[service]
    heart = SinglePart(
        disposition=Disposition.REACTION, content_type=TEXT_PLAIN, content="❤".encode()
    )
    react = MimiContent(nested_part=heart, in_reply_to=KNOWN_IDS[0])
    (obj,) = translator.content_to_native(react, refs=_refs())
    assert obj == {
        "sender_action": "react",
        "payload": {"message_id": "m_target", "reaction": "❤"},
    }
    payload = translator.webhook_from_neutral(
        message(service, heart, in_reply_to=KNOWN_IDS[0], name=None), refs=_refs()
    )
    reaction = payload["entry"][0]["messaging"][0]["reaction"]
    assert reaction == {"mid": "m_target", "action": "react", "reaction": "love", "emoji": "❤"}
    unreact = MimiContent(
        nested_part=NullPart(disposition=Disposition.REACTION), in_reply_to=KNOWN_IDS[0]
    )
    assert translator.content_to_native(unreact, refs=_refs())[0]["sender_action"] == "unreact"


def test_receipts() -> None:
    delivered = receipt_event(
        "m_1", "delivered", sender=THIRD_PARTY, recipient=PLATFORM_USER["messenger"], sent_at=7
    )
    payload = MESSENGER.webhook_from_neutral(delivered)
    assert payload["entry"][0]["messaging"][0]["delivery"] == {"mids": ["m_1"], "watermark": 7}
    assert MESSENGER.webhook_to_neutral(payload, users=new_users()) == [delivered]
    read = receipt_event(
        "m_1", "read", sender=THIRD_PARTY, recipient=PLATFORM_USER["instagram"], sent_at=7
    )
    payload = INSTAGRAM.webhook_from_neutral(read)
    assert payload["entry"][0]["messaging"][0]["read"] == {"mid": "m_1"}
    assert INSTAGRAM.webhook_to_neutral(payload, users=new_users()) == [read]
    with pytest.raises(TranslationError) as err:
        INSTAGRAM.webhook_from_neutral(
            receipt_event(
                "m",
                "delivered",
                sender=THIRD_PARTY,
                recipient=PLATFORM_USER["instagram"],
                sent_at=1,
            )
        )
    assert err.value.field == "receipt.status"
    watermark = {
        "sender": {"id": "1"},
        "recipient": {"id": "2"},
        "timestamp": 9,
        "read": {"watermark": 5},
    }
    assert isinstance(MESSENGER, MetaTranslator)
    (event,) = MESSENGER.messaging_event_to_neutral(watermark)
    assert (
        event.receipt is not None
        and event.receipt.watermark == 5
        and event.receipt.message_id == ""
    )


@META
def test_send_api(service: str) -> None:
    translator = TRANSLATORS[service]
    event = message(service, TEXT, in_reply_to=KNOWN_IDS[0], name=None)
    (body,) = translator.send_request_from_neutral(event, refs=_refs())
    platform_id = PLATFORM_USER[service].rsplit("/", 1)[1]
    assert body == {"recipient": {"id": platform_id}, "messaging_type": "RESPONSE",
                    "message": {"text": "hello", "reply_to": {"mid": "m_target"}}}  # fmt: skip
    (back,) = translator.send_request_to_neutral(
        body, sender=THIRD_PARTY, id="m1", sent_at=event.envelope.sent_at, refs=_refs()
    )
    assert same_salt(back, event) == event
    (typing,) = translator.send_request_to_neutral(
        {"recipient": {"id": "5"}, "sender_action": "typing_on"},
        sender=PLATFORM_USER[service],
        id="t",
        sent_at=1,
    )
    assert typing.typing == "on" and typing.envelope.kind == "typing"
    assert translator.typing_to_native(typing)["sender_action"] == "typing_on"
    with pytest.raises(TranslationError):
        translator.webhook_from_neutral(typing)
    (seen,) = translator.send_request_to_neutral(
        {"recipient": {"id": "5"}, "sender_action": "mark_seen"},
        sender=PLATFORM_USER[service],
        id="s",
        sent_at=3,
    )
    assert seen.receipt is not None and seen.receipt.status == "read"


E0 = "entry[0].messaging[0]"


def _event(**event: Any) -> dict:
    base = {"sender": {"id": "1"}, "recipient": {"id": "2"}, "timestamp": 5}
    return {"object": "page", "entry": [{"id": "2", "messaging": [base | event]}]}


BAD = [
    ({"object": "instagram", "entry": []}, "object"),
    ({"object": "page", "entry": [{"id": "1"}]}, "entry[0].messaging"),
    ({"object": "page", "entry": [{"messaging": [{"recipient": {"id": "2"}}]}]}, f"{E0}.sender"),
    (_event(message={"mid": "m", "text": 4}), f"{E0}.message.text"),
    (_event(message={"text": "x"}), f"{E0}.message.mid"),
    (_event(message={"mid": "m"}), f"{E0}.message"),
    (
        _event(message={"mid": "m", "attachments": [{"type": "hologram", "payload": {}}]}),
        f"{E0}.message.attachments[0].type",
    ),
    (
        _event(message={"mid": "m", "attachments": [{"type": "image", "payload": {}}]}),
        f"{E0}.message.attachments[0].payload.url",
    ),
    (_event(reaction={"mid": "m", "action": "poke"}), f"{E0}.reaction.action"),
    (_event(postback={"payload": "x"}), E0),
    (_event(timestamp="soon", message={"mid": "m", "text": "x"}), f"{E0}.timestamp"),
    (b"{", "$"),
]


@pytest.mark.parametrize(("payload", "field"), BAD)
def test_malformed_webhooks_are_clear_errors(payload: Any, field: str) -> None:
    with pytest.raises(TranslationError) as err:
        MESSENGER.webhook_to_neutral(payload)
    assert err.value.field == field


def test_echoes_are_skipped() -> None:
    assert (
        MESSENGER.webhook_to_neutral(_event(message={"mid": "m", "text": "x", "is_echo": True}))
        == []
    )
    assert json.dumps(MESSENGER.webhook_to_neutral(_event(delivery={"watermark": 1}))) == "[]"
