"""Helpers for translator tests: known references, users, event builders, normalisation."""

from __future__ import annotations

import json
from typing import Any

import msgspec
from pywa import WhatsApp
from pywa.types import RawUpdate

from gateway.content import MimiContent, NestedPart
from gateway.translate import Envelope, MemoryMessageRefs, MemoryUserDirectory, NeutralEvent

THIRD_PARTY = "mimi://client-7/u/alice"
WA_USER = "mimi://whatsapp/u/4915112345678"
MS_USER = "mimi://messenger/u/6354821976152837"
IG_USER = "mimi://instagram/u/17841405822304914"
PLATFORM_USER = {"whatsapp": WA_USER, "messenger": MS_USER, "instagram": IG_USER}
KNOWN_REFS = {
    service: [(f"{prefix}{n}", bytes([1, n]) + bytes(30)) for n in range(3)]
    for service, prefix in (
        ("whatsapp", "wamid.known"),
        ("messenger", "m_known"),
        ("instagram", "aWdfknown"),
    )
}
KNOWN_IDS = [mimi for _, mimi in KNOWN_REFS["whatsapp"]]  # the same MIMI ids on every service


def message(
    service: str, nested_part: NestedPart, *, id: str = "m1", sent_at: int = 1_700_000_000_000,
    name: str | None = "Alice", **fields: Any,
) -> NeutralEvent:  # fmt: skip
    """A message from the third party to the platform user of `service`."""
    return NeutralEvent(
        envelope=Envelope(
            id=id, sender=THIRD_PARTY, recipient=PLATFORM_USER[service], sent_at=sent_at
        ),
        content=MimiContent(nested_part=nested_part, **fields),
        sender_name=name,
    )


def same_salt(event: NeutralEvent, like: NeutralEvent) -> NeutralEvent:
    """`event` with the salt of `like`: natives carry no salt, each hop draws one."""
    if event.content is None or like.content is None:
        return event
    content = msgspec.structs.replace(event.content, salt=like.content.salt)
    return msgspec.structs.replace(event, content=content)


def same_content(a: MimiContent, b: MimiContent) -> bool:
    """Equality apart from the salt."""
    return msgspec.structs.replace(a, salt=b.salt) == b


def new_refs() -> MemoryMessageRefs:
    store = MemoryMessageRefs()
    for service, pairs in KNOWN_REFS.items():
        for native, mimi in pairs:
            store.remember(service, native, mimi)
    return store


def new_users() -> MemoryUserDirectory:
    directory = MemoryUserDirectory()
    for service in PLATFORM_USER:
        directory.remember(service, THIRD_PARTY)
    return directory


_WA = WhatsApp(phone_id="1", token="test", filter_updates=False)


def pywa_parse(payload: dict[str, Any]) -> Any:
    """Let pywa dispatch and parse a webhook as its server would."""
    raw = RawUpdate(json.dumps(payload).encode(), hmac_header=None, update_hash="test")
    handler = _WA._get_handler_type(raw)
    assert handler is not None and handler._update is not None, "pywa found no handler"
    return handler._update.from_update(client=_WA, update=raw)
