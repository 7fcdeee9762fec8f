"""What a MIMI message does, in the terms native formats use (draft §4: reply, react, edit...).

MIMI expresses edits, deletes and reaction changes as messages that `replace` another
(draft §2.1); native formats have distinct message kinds for them.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

from gateway.content import Disposition, MimiContent, NestedPart, NullPart
from gateway.translate.errors import TranslationError
from gateway.translate.neutral import DERIVED_REFS, MessageRefs

Action = Literal["message", "react", "unreact", "edit", "delete"]


class Intent(NamedTuple):
    """The native action, its body, the message it acts on and the message it replies to."""

    action: Action
    part: NestedPart
    target: bytes | None = None
    reply_to: bytes | None = None


def intent_of(content: MimiContent) -> Intent:
    """Classify MIMI content as a plain message, a reaction (change), an edit or a delete."""
    part = content.nested_part
    if part.disposition == Disposition.REACTION:
        if content.in_reply_to is None:
            raise TranslationError("inReplyTo", "a reaction needs the message it reacts to")
        action: Action = "unreact" if isinstance(part, NullPart) else "react"
        return Intent(action, part, content.in_reply_to)
    if isinstance(part, NullPart):
        if content.replaces is None:
            raise TranslationError("nestedPart", "an empty body needs `replaces` (a delete)")
        return Intent("delete", part, content.replaces, content.in_reply_to)
    if content.replaces is not None:
        return Intent("edit", part, content.replaces, content.in_reply_to)
    return Intent("message", part, None, content.in_reply_to)


def native_ref(refs: MessageRefs | None, service: str, mimi_id: bytes, field: str) -> str:
    """Resolve a MIMI message ID to the native id of that message on `service`."""
    native = (refs or DERIVED_REFS).native_id(service, mimi_id)
    if native is None:
        raise TranslationError(field, f"message not known on {service}")
    return native


def mimi_ref(refs: MessageRefs | None, service: str, native_id: str) -> bytes:
    """The MIMI message ID of a native message."""
    return (refs or DERIVED_REFS).mimi_id(service, native_id)
