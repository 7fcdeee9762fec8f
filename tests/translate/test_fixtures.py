"""Every real native example in tests/data/native translates to neutral and back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.content import Disposition, ExternalPart, SinglePart
from gateway.translate import TRANSLATORS, MemoryMessageRefs, NeutralEvent
from gateway.translate.meta import MetaTranslator
from tests.content.paths import NATIVE_FIXTURES
from tests.translate.helpers import same_salt

FIXTURES = sorted(NATIVE_FIXTURES.glob("*.json"))
SENDER = "mimi://whatsapp/u/16505550000"


def test_fixtures_present_with_sources() -> None:
    assert len(FIXTURES) >= 15
    for path in FIXTURES:
        assert path.with_suffix(".src.txt").exists(), path.name


def _parse(path: Path, doc: dict[str, Any], refs: MemoryMessageRefs) -> list[NeutralEvent]:
    translator = TRANSLATORS[path.stem.split("_")[0]]
    if "_send_" in path.stem:
        return translator.send_request_to_neutral(
            doc, sender=SENDER, id="sent-1", sent_at=1_700_000_000_000, refs=refs
        )
    if "entry" not in doc:  # a single `messaging` event as the source quotes it
        assert isinstance(translator, MetaTranslator)
        return translator.messaging_event_to_neutral(doc, refs=refs)
    return translator.webhook_to_neutral(doc, refs=refs)


def _render(path: Path, event: NeutralEvent, refs: MemoryMessageRefs) -> list[dict[str, Any]]:
    translator = TRANSLATORS[path.stem.split("_")[0]]
    if "_send_" in path.stem:
        return translator.send_request_from_neutral(event, refs=refs)
    return [translator.webhook_from_neutral(event, refs=refs)]


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_fixture_round_trips(path: Path, refs: MemoryMessageRefs) -> None:
    doc = json.loads(path.read_text())
    events = _parse(path, doc, refs)
    assert events
    for event in events:
        natives = _render(path, event, refs)
        back = [
            e for native in natives for e in _parse(path, json.loads(json.dumps(native)), refs)
        ]
        assert [same_salt(e, event) for e in back] == [event]


def _only(path: str, refs: MemoryMessageRefs) -> NeutralEvent:
    full = NATIVE_FIXTURES / path
    (event,) = _parse(full, json.loads(full.read_text()), refs)
    return event


def test_fixture_values(refs: MemoryMessageRefs) -> None:
    text = _only("whatsapp_webhook_text.json", refs)
    assert text.content is not None and text.content.nested_part == SinglePart(
        content_type="text/plain;charset=utf-8", content=b"Body Text"
    )
    assert text.envelope.sender == "mimi://whatsapp/u/972987654321"
    assert text.envelope.sent_at == 1697043223000 and text.sender_name == "Test Name"
    image = _only("whatsapp_webhook_image.json", refs).content
    assert image is not None and isinstance(image.nested_part, ExternalPart)
    assert image.nested_part.url == "whatsapp-media:65463453"
    assert image.nested_part.content_type == "image/jpeg" and image.nested_part.hash_alg == 1
    reply = _only("whatsapp_webhook_reply.json", refs).content
    assert reply is not None and reply.in_reply_to == refs.mimi_id("whatsapp", "wamid.xyzxyz==")
    reaction = _only("whatsapp_webhook_reaction.json", refs).content
    assert reaction is not None and reaction.nested_part.disposition == Disposition.REACTION
    location = _only("whatsapp_webhook_location.json", refs).content
    assert location is not None and isinstance(location.nested_part, SinglePart)
    geo = json.loads(location.nested_part.content)
    assert geo["geometry"]["coordinates"] == [-122.2164385, 37.4611978]
    failed = _only("whatsapp_webhook_status_failed.json", refs)
    assert failed.receipt is not None and failed.receipt.status == "failed"
    assert failed.receipt.error_code == 130472 and failed.receipt.message_id == "xyzxyz"
    sent = _only("whatsapp_webhook_status_sent.json", refs)
    assert sent.receipt is not None and sent.receipt.status == "sent"
    button = _only("whatsapp_webhook_interactive.json", refs).content
    assert button is not None and button.extensions.get("whatsappInteractive") is not None
    send_image = _only("whatsapp_send_image.json", refs)
    assert send_image.envelope.recipient == "mimi://whatsapp/u/16505551234"
    messenger_text = _only("messenger_webhook_text.json", refs)
    assert messenger_text.envelope.id == "mid.1457764197618:41d102a3e1ae206a38"
    assert messenger_text.envelope.sender == "mimi://messenger/u/1234"
    story = _only("instagram_webhook_story_reply.json", refs)
    assert story.envelope.sent_at == 1631082844000
    assert story.content is not None and story.content.extensions.get("instagramStoryReply")
    ms_reaction = _only("messenger_webhook_reaction.json", refs).content
    assert ms_reaction is not None and isinstance(ms_reaction.nested_part, SinglePart)
    assert ms_reaction.nested_part.content == "❤️".encode()
