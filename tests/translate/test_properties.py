"""Property: neutral -> native -> neutral is the identity on what each service can express."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.content import MimiContent, SinglePart
from gateway.translate import TRANSLATORS, NeutralEvent
from gateway.translate import whatsapp as wa
from gateway.translate.common import TEXT_PLAIN
from tests.translate.helpers import message, new_refs, new_users, same_content, same_salt
from tests.translate.strategies import contents, messages

SERVICES = sorted(TRANSLATORS)
_settings = settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])


def _comparable(event: NeutralEvent, service: str) -> NeutralEvent:
    # Messenger-Platform reactions, edits and unsends carry only the target's mid, so their
    # neutral id is derived (meta.py); everything else must survive.
    if service == "whatsapp" or event.content is None:
        return event
    content = event.content
    derived = content.replaces is not None or content.nested_part.disposition == 2
    if not derived:
        return event
    return msgspec.structs.replace(event, envelope=msgspec.structs.replace(event.envelope, id="*"))


@pytest.mark.parametrize("service", SERVICES)
@given(data=st.data())
@_settings
def test_webhook_round_trip_is_identity(service: str, data: st.DataObject) -> None:
    translator = TRANSLATORS[service]
    event = data.draw(messages(service))
    refs, users = new_refs(), new_users()
    wire = msgspec.json.encode(translator.webhook_from_neutral(event, refs=refs))
    (back,) = translator.webhook_to_neutral(wire, users=users, refs=refs)
    assert _comparable(same_salt(back, event), service) == _comparable(event, service)


@pytest.mark.parametrize("service", SERVICES)
@given(data=st.data())
@_settings
def test_native_object_round_trip_is_identity(service: str, data: st.DataObject) -> None:
    translator = TRANSLATORS[service]
    content: MimiContent = data.draw(contents(service))
    refs = new_refs()
    (obj,) = translator.content_to_native(content, refs=refs)
    plaintext = msgspec.json.encode(obj)  # what the SDK encrypts (DESIGN §4.5)
    back = translator.native_to_content(msgspec.json.decode(plaintext), refs=refs)
    assert same_content(back, content)


@given(
    event=messages("whatsapp"),
    name=st.none() | st.sampled_from(["\x00id", "\x00body"]) | st.text(max_size=10),
)
@_settings
def test_whatsapp_wire_fast_path_matches_general_path(
    event: NeutralEvent, name: str | None
) -> None:
    event = msgspec.structs.replace(event, sender_name=name)
    refs, users = new_refs(), new_users()
    wire = wa.encode_webhook(event, refs=refs)
    assert msgspec.json.decode(wire) == wa.webhook_from_neutral(event, refs=refs)
    fast = wa.webhook_to_neutral(wire, users=users, refs=refs)
    general = wa.webhook_to_neutral(msgspec.json.decode(wire), users=users, refs=refs)
    assert [same_salt(e, g) for e, g in zip(fast, general, strict=True)] == general


@given(text=st.text(min_size=1, max_size=30), id=st.text(min_size=1, max_size=10))
@_settings
def test_whatsapp_plain_text_fast_path(text: str, id: str) -> None:
    event = message("whatsapp", SinglePart(content_type=TEXT_PLAIN, content=text.encode()), id=id)
    wire = wa.encode_webhook(event)
    assert msgspec.json.decode(wire) == wa.webhook_from_neutral(event)
    (back,) = wa.webhook_to_neutral(wire, users=new_users())
    assert same_salt(back, event) == event
