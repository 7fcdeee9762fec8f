"""WhatsApp: what we emit is what pywa parses, limits, degradations and malformed input."""

from __future__ import annotations

import json
from typing import Any

import msgspec
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
from gateway.translate import (
    MemoryMessageRefs,
    MemoryUserDirectory,
    TranslationError,
    receipt_event,
)
from gateway.translate import whatsapp as wa
from gateway.translate.common import GEO_JSON, TEXT_PLAIN, VCARD
from gateway.translate.limits import MB
from gateway.translate.vcard import contacts_to_vcard
from tests.translate.helpers import KNOWN_IDS, THIRD_PARTY, WA_USER, message, pywa_parse, same_salt

TARGET = KNOWN_IDS[0]  # the MIMI id of wamid.known0
TEXT = SinglePart(content_type=TEXT_PLAIN, content=b"hi there")
CONTACTS = [
    {
        "name": {"formatted_name": "Bob Jones", "first_name": "Bob", "last_name": "Jones"},
        "phones": [{"phone": "+49 151 1234", "type": "CELL", "wa_id": "491511234"}],
        "emails": [{"email": "bob@example.com", "type": "WORK"}],
    }
]


def media(content_type: str, **fields: Any) -> ExternalPart:
    defaults: dict[str, Any] = {
        "url": "https://gw.example/v1/media/abc123", "size": 2048, "enc_alg": 1,
        "key": b"k" * 16, "nonce": b"n" * 12, "hash_alg": 1, "content_hash": b"h" * 32,
    }  # fmt: skip
    return ExternalPart(content_type=content_type, **(defaults | fields))


def round_trip(event: Any, refs: MemoryMessageRefs, users: MemoryUserDirectory) -> dict:
    payload = wa.webhook_from_neutral(event, refs=refs)
    payload = json.loads(json.dumps(payload))  # what goes over the wire
    (back,) = wa.webhook_to_neutral(payload, users=users, refs=refs)
    assert same_salt(back, event) == event
    return payload


def test_text_as_pywa_sees_it(refs: MemoryMessageRefs, users: MemoryUserDirectory) -> None:
    event = message("whatsapp", TEXT, in_reply_to=TARGET)
    payload = round_trip(event, refs, users)
    msg = pywa_parse(payload)
    scoped = wa.native_user_id_of(THIRD_PARTY)
    assert type(msg).__name__ == "Message" and msg.text == "hi there"
    assert msg.id == "wamid.m1" and msg.timestamp.timestamp() == 1_700_000_000
    assert msg.from_user.wa_id == scoped and msg.from_user.name == "Alice"
    assert msg.from_user.bsuid == f"ZZ.{scoped}"
    assert msg.reply_to_message.id == "wamid.known0"
    assert msg.metadata.display_phone_number == "4915112345678"
    value = payload["entry"][0]["changes"][0]["value"]
    assert isinstance(value["messages"][0]["timestamp"], str)


@pytest.mark.parametrize(
    ("part", "kind"),
    [
        (media("image/jpeg", description="a cat"), "image"),
        (media("video/mp4", description="a clip"), "video"),
        (media("audio/mpeg"), "audio"),
        (media("audio/ogg; codecs=opus", disposition=Disposition.INLINE), "audio"),
        (media("application/pdf", filename="a.pdf", description="terms"), "document"),
        (media("image/webp"), "sticker"),
    ],
)
def test_media_as_pywa_sees_it(
    part: ExternalPart, kind: str, refs: MemoryMessageRefs, users: MemoryUserDirectory
) -> None:
    msg = pywa_parse(round_trip(message("whatsapp", part), refs, users))
    assert msg.type.value == kind
    parsed = getattr(msg, kind)
    assert parsed.url == part.url and parsed.mime_type == part.content_type
    assert parsed.sha256 == "aGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGg="
    if kind in ("image", "video", "document"):
        assert parsed.caption == part.description
    if kind == "document":
        assert parsed.filename == "a.pdf"
    if kind == "audio":
        assert parsed.voice is (part.disposition == Disposition.INLINE)
    if kind == "sticker":
        assert parsed.animated is False


def test_location_and_contacts_as_pywa_sees_them(
    refs: MemoryMessageRefs, users: MemoryUserDirectory
) -> None:
    geo = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [13.4, 52.5]},
           "properties": {"name": "Berlin", "address": "Mitte"}}  # fmt: skip
    part = SinglePart(content_type=GEO_JSON, content=json.dumps(geo).encode())
    msg = pywa_parse(round_trip(message("whatsapp", part), refs, users))
    assert (msg.location.latitude, msg.location.longitude) == (52.5, 13.4)
    assert msg.location.name == "Berlin" and msg.location.address == "Mitte"
    card = SinglePart(content_type=VCARD, content=contacts_to_vcard(CONTACTS).encode())
    msg = pywa_parse(round_trip(message("whatsapp", card), refs, users))
    (contact,) = msg.contacts
    assert contact.name.formatted_name == "Bob Jones" and contact.name.last_name == "Jones"
    assert contact.phones[0].wa_id == "491511234" and contact.emails[0].email == "bob@example.com"


def test_reactions_edits_deletes_as_pywa_sees_them(
    refs: MemoryMessageRefs, users: MemoryUserDirectory
) -> None:
    heart = SinglePart(
        disposition=Disposition.REACTION, content_type=TEXT_PLAIN, content="❤".encode()
    )
    msg = pywa_parse(round_trip(message("whatsapp", heart, in_reply_to=TARGET), refs, users))
    assert msg.reaction.emoji == "❤" and msg.reaction.message_id == "wamid.known0"
    unlike = NullPart(disposition=Disposition.REACTION)
    msg = pywa_parse(round_trip(message("whatsapp", unlike, in_reply_to=TARGET), refs, users))
    assert msg.reaction.emoji is None and msg.reaction.is_removed
    edited = pywa_parse(round_trip(message("whatsapp", TEXT, replaces=TARGET), refs, users))
    assert type(edited).__name__ == "EditedMessage"
    assert edited.original_message_id == "wamid.known0" and edited.message.text == "hi there"
    deleted = pywa_parse(round_trip(message("whatsapp", NullPart(), replaces=TARGET), refs, users))
    assert type(deleted).__name__ == "DeletedMessage"
    assert deleted.original_message_id == "wamid.known0"


@pytest.mark.parametrize("status", ["sent", "delivered", "read", "failed"])
def test_receipts_as_pywa_sees_them(
    status: str, refs: MemoryMessageRefs, users: MemoryUserDirectory
) -> None:
    error = {"error_code": 131026, "error_title": "Undeliverable"} if status == "failed" else {}
    event = receipt_event(
        "known0", status, sender=THIRD_PARTY, recipient=WA_USER, sent_at=1_700_000_000_000,
        **error,
    )  # fmt: skip
    payload = round_trip(event, refs, users)
    parsed = pywa_parse(payload)
    assert type(parsed).__name__ == "MessageStatus" and parsed.status.value == status
    assert parsed.id == "wamid.known0" and parsed.from_user.wa_id == wa.native_user_id_of(
        THIRD_PARTY
    )
    if status == "failed":
        assert parsed.error.code == 131026
    assert payload["entry"][0]["changes"][0]["value"]["contacts"][0]["user_id"]


def test_interactive_reply_round_trips(
    refs: MemoryMessageRefs, users: MemoryUserDirectory
) -> None:
    interactive = {"type": "list_reply", "list_reply": {"id": "x", "title": "Option"}}
    msg = {
        "from": "491700",
        "id": "wamid.i",
        "timestamp": "1700000000",
        "type": "interactive",
        "context": {"from": "4915112345678", "id": "wamid.known1"},
        "interactive": interactive,
    }
    value = {
        "metadata": {"display_phone_number": "4915112345678"},
        "contacts": [{"wa_id": "491700", "user_id": "DE.1", "profile": {"name": "Eve"}}],
        "messages": [msg],
    }
    change = {"field": "messages", "value": value}
    payload = {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [change]}]}
    (event,) = wa.webhook_to_neutral(payload, refs=refs)
    parsed = pywa_parse(wa.webhook_from_neutral(event, refs=refs))
    assert type(parsed).__name__ == "CallbackSelection" and parsed.title == "Option"


# -- limits (DESIGN §5) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("part", "field"),
    [
        (SinglePart(content_type=TEXT_PLAIN, content=b"x" * 4097), "nestedPart.content"),
        (media("image/jpeg", description="c" * 1025), "nestedPart.description"),
    ],
)
def test_limits_name_the_field(part: Any, field: str, refs: MemoryMessageRefs) -> None:
    with pytest.raises(TranslationError) as err:
        wa.content_to_native(MimiContent(nested_part=part), refs=refs)
    assert err.value.field == field and "whatsapp" in err.value.reason


@pytest.mark.parametrize(
    ("content_type", "size", "ok"),
    [
        ("image/jpeg", 5 * MB, True),
        ("image/jpeg", 5 * MB + 1, False),
        ("video/mp4", 16 * MB + 1, False),
        ("audio/aac", 16 * MB + 1, False),
        ("application/zip", 100 * MB, True),
        ("application/zip", 100 * MB + 1, False),
        ("image/webp", 500 * 1024 + 1, False),
    ],
)
def test_media_size_limits(content_type: str, size: int, ok: bool) -> None:
    part = ExternalPart(content_type=content_type, url="https://x/y", size=size)
    if ok:
        wa.content_to_native(MimiContent(nested_part=part))
        return
    with pytest.raises(TranslationError) as err:
        wa.content_to_native(MimiContent(nested_part=part))
    assert err.value.field == "nestedPart.size" and "bytes" in err.value.reason


def test_text_at_the_limit_passes() -> None:
    (obj,) = wa.content_to_native(
        MimiContent(nested_part=SinglePart(content_type=TEXT_PLAIN, content="é".encode() * 4096))
    )
    assert len(obj["text"]["body"]) == 4096


# -- degradations ---------------------------------------------------------------------------


def test_sticker_over_100kb_is_animated() -> None:
    (obj,) = wa.content_to_native(MimiContent(nested_part=media("image/webp", size=200_000)))
    assert obj["sticker"]["animated"] is True


def test_unsupported_image_type_goes_as_document() -> None:
    part = media("image/gif")
    (obj,) = wa.content_to_native(MimiContent(nested_part=part))
    assert obj["type"] == "document"
    assert wa.native_to_content(json.loads(json.dumps(obj))).nested_part == part


def test_markdown_keeps_its_media_type() -> None:
    part = SinglePart(content_type="text/markdown;variant=GFM-MIMI", content=b"**hi**")
    (obj,) = wa.content_to_native(MimiContent(nested_part=part))
    assert obj["text"]["body"] == "**hi**"
    assert wa.native_to_content(obj).nested_part == part


def test_process_all_becomes_several_messages(refs: MemoryMessageRefs) -> None:
    body = MultiPart(part_semantics=PartSemantics.PROCESS_ALL, parts=(TEXT, media("image/png")))
    event = message("whatsapp", body)
    payload = wa.webhook_from_neutral(event, refs=refs)
    messages = payload["entry"][0]["changes"][0]["value"]["messages"]
    assert [m["type"] for m in messages] == ["text", "image"]
    assert [m["id"] for m in messages] == ["wamid.m1", "wamid.m1.1"]
    back = wa.webhook_to_neutral(payload, refs=refs)
    assert [e.content.nested_part for e in back] == list(body.parts)  # type: ignore[union-attr]


def test_single_unit_text_and_image_becomes_caption() -> None:
    body = MultiPart(part_semantics=PartSemantics.SINGLE_UNIT, parts=(TEXT, media("image/png")))
    (obj,) = wa.content_to_native(MimiContent(nested_part=body))
    assert obj["image"]["caption"] == "hi there"
    other = MultiPart(part_semantics=PartSemantics.SINGLE_UNIT, parts=(TEXT, TEXT))
    with pytest.raises(TranslationError, match="singleUnit"):
        wa.content_to_native(MimiContent(nested_part=other))


def test_choose_one_takes_the_first_expressible() -> None:
    html = SinglePart(content_type="text/html", content=b"<b>hi</b>")
    body = MultiPart(part_semantics=PartSemantics.CHOOSE_ONE, parts=(html, TEXT))
    assert wa.content_to_native(MimiContent(nested_part=body)) == [
        {"type": "text", "text": {"body": "hi there"}}
    ]
    only_html = MultiPart(part_semantics=PartSemantics.CHOOSE_ONE, parts=(html, html))
    with pytest.raises(TranslationError) as err:
        wa.content_to_native(MimiContent(nested_part=only_html))
    assert err.value.field == "nestedPart.parts[0].contentType"


def _single(content_type: str, content: bytes) -> MimiContent:
    return MimiContent(nested_part=SinglePart(content_type=content_type, content=content))


SESSION = media("text/uri-list", disposition=Disposition.SESSION)


@pytest.mark.parametrize(
    ("content", "field"),
    [
        (_single("text/html", b"x"), "nestedPart.contentType"),
        (MimiContent(nested_part=NullPart()), "nestedPart"),
        (MimiContent(nested_part=SESSION), "nestedPart.disposition"),
        (MimiContent(nested_part=TEXT, in_reply_to=b"\x01" * 32), "inReplyTo"),
        (MimiContent(nested_part=NullPart(disposition=Disposition.REACTION)), "inReplyTo"),
        (_single("text/plain;charset=latin1", b"x"), "nestedPart.contentType"),
        (_single(TEXT_PLAIN, b"\xff"), "nestedPart.content"),
        (_single(TEXT_PLAIN, b""), "nestedPart.content"),
        (_single(GEO_JSON, b"{}"), "nestedPart.content"),
        (_single(VCARD, b"BEGIN:VCARD"), "contacts"),
    ],
)
def test_inexpressible_content_is_a_clear_error(content: MimiContent, field: str) -> None:
    with pytest.raises(TranslationError) as err:
        wa.content_to_native(content)
    assert err.value.field == field


# -- send API, typing, users -----------------------------------------------------------------


def test_send_requests(refs: MemoryMessageRefs, users: MemoryUserDirectory) -> None:
    event = message("whatsapp", TEXT, in_reply_to=TARGET)
    (body,) = wa.send_request_from_neutral(event, refs=refs)
    assert body["messaging_product"] == "whatsapp" and body["context"] == {
        "message_id": "wamid.known0"
    }
    (back,) = wa.send_request_to_neutral(
        body, sender=THIRD_PARTY, id="m1", sent_at=event.envelope.sent_at, refs=refs
    )
    assert same_salt(back, event) == as_sent_by_third_party(event)
    read = receipt_event("known0", "read", sender=WA_USER, recipient=THIRD_PARTY, sent_at=5)
    (mark,) = wa.send_request_from_neutral(read)
    assert mark == {
        "messaging_product": "whatsapp",
        "status": "read",
        "message_id": "wamid.known0",
    }
    assert wa.send_request_to_neutral(
        mark, sender=WA_USER, recipient=THIRD_PARTY, id="", sent_at=5
    ) == [read]
    typing = wa.send_request_to_neutral(
        {**mark, "typing_indicator": {"type": "text"}},
        sender=WA_USER,
        recipient=THIRD_PARTY,
        id="",
        sent_at=5,
    )
    assert [e.envelope.kind for e in typing] == ["receipt", "typing"]
    assert wa.typing_to_native(typing[1], message_id="known0") == {
        **mark,
        "typing_indicator": {"type": "text"},
    }
    with pytest.raises(TranslationError):
        wa.webhook_from_neutral(typing[1])
    with pytest.raises(TranslationError):
        wa.send_request_to_neutral(mark, sender=WA_USER, id="", sent_at=5)


def as_sent_by_third_party(event: Any) -> Any:
    """The event a send request yields: the caller names the sender; no display name."""
    env = msgspec.structs.replace(event.envelope, sender=THIRD_PARTY, recipient=WA_USER)
    return msgspec.structs.replace(event, envelope=env, sender_name=None)


# -- malformed native input -----------------------------------------------------------------

GOOD = {
    "object": "whatsapp_business_account",
    "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
        "metadata": {"display_phone_number": "4915112345678"},
        "messages": [{"from": "491700", "id": "wamid.a", "timestamp": "1700000000", "type": "text",
                      "text": {"body": "hi"}}],
    }}]}],
}  # fmt: skip


def _with(path: list[Any], value: Any) -> dict:
    doc = json.loads(json.dumps(GOOD))
    target = doc
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return doc


MSG = ["entry", 0, "changes", 0, "value", "messages", 0]
V = "entry[0].changes[0].value"
M = f"{V}.messages[0]"


def _msg(kind: str, body: Any) -> dict:
    return _with(MSG, {"type": kind, kind: body, "from": "1", "id": "a", "timestamp": "1"})


BAD = [
    (b"not json", "$"),
    ([], "$"),
    (_with(["object"], "page"), "object"),
    (_with(["entry"], {}), "entry"),
    (_with(["entry", 0], "x"), "entry[0]"),
    (_with(["entry", 0, "changes", 0, "value", "metadata"], KeyError), f"{V}.metadata"),
    (_with([*MSG, "type"], "hologram"), f"{M}.type"),
    (_with([*MSG, "type"], KeyError), f"{M}.type"),
    (_with([*MSG, "text"], KeyError), f"{M}.text"),
    (_with([*MSG, "text", "body"], 5), f"{M}.text.body"),
    (_with([*MSG, "timestamp"], "yesterday"), f"{M}.timestamp"),
    (_with([*MSG, "from"], None), f"{M}.from"),
    (_with([*MSG, "context"], []), f"{M}.context"),
    (_with([*MSG, "mimi"], {"part": {"disposition": "loud"}}), f"{M}.mimi.part.disposition"),
    (_with([*MSG, "mimi"], {"topicId": "!"}), f"{M}.mimi.topicId"),
    (_msg("image", {"mime_type": "image/png"}), f"{M}.image.id"),
    (_msg("image", {"id": "1", "sha256": "%%"}), f"{M}.image.sha256"),
    (_msg("location", {"latitude": "x"}), f"{M}.location"),
    (_msg("contacts", [{"name": 3}]), f"{M}.contacts"),
    (_msg("reaction", {}), f"{M}.reaction.message_id"),
    (_with([*MSG[:-2], "statuses"], [{"id": "a", "status": "lost"}]), f"{V}.statuses[0].status"),
]


@pytest.mark.parametrize(("payload", "field"), BAD)
def test_malformed_webhooks_are_clear_errors(payload: Any, field: str) -> None:
    with pytest.raises(TranslationError) as err:
        wa.webhook_to_neutral(payload)
    assert err.value.field == field
