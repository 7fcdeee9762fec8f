"""MIMI content <-> Messenger / Instagram Send API objects (DESIGN §4.5, §5).

The native object is the Send API `message` (`{"text": "hi"}`, `{"attachment": {...}}`), with
`reply_to: {mid}` for replies as in webhooks. Actions that the Send API expresses outside
`message` keep its own shape without `recipient`: `{"sender_action": "react" | "unreact",
"payload": {"message_id", "reaction"}}`. Edits and unsends, which only webhooks know, use the
webhook shapes: `{"message_edit": {"mid", "text"}}` and `{"mid", "is_deleted": true}`.

Degradations: one attachment per message, so processAll becomes one message per part; the
media type, AES key, description etc. ride in `mimi` (common.py); an edit carries text only;
singleUnit, locations, contacts and inline non-text parts are refused with a TranslationError.
"""

from __future__ import annotations

from typing import Any

import msgspec

from gateway.content import (
    Disposition,
    Extensions,
    ExternalPart,
    MimiContent,
    NestedPart,
    SinglePart,
    UnknownExtension,
)
from gateway.translate import common as c
from gateway.translate.errors import TranslationError
from gateway.translate.intent import intent_of, mimi_ref, native_ref
from gateway.translate.limits import LIMITS
from gateway.translate.neutral import MessageRefs

ATTACHMENT_KINDS = ("image", "audio", "video", "file")
STORY_EXT = "instagramStoryReply"  # private-use extension key (draft §2.3)
_DEFAULT_TYPES = {
    "image": "image/jpeg",
    "audio": "audio/mpeg",
    "video": "video/mp4",
    "file": "application/octet-stream",
}


class MetaContent:
    """Content translation for one Messenger-Platform service ("messenger" or "instagram")."""

    def __init__(self, service: str, *, can_unsend: bool) -> None:
        self.service = service
        self.limits = LIMITS[service]
        self.can_unsend = can_unsend

    # -- to native ------------------------------------------------------------------------

    def _kind(self, part: ExternalPart) -> str:
        if part.disposition == Disposition.ATTACHMENT:
            return "file"
        major = c.base_type(part.content_type).split("/", 1)[0]
        limit = self.limits.media.get(major)
        return major if limit is not None and c.accepts(limit, part.content_type) else "file"

    def _leaf(self, part: NestedPart, field: str) -> list[dict[str, Any]]:
        if isinstance(part, ExternalPart):
            if part.disposition == Disposition.SESSION:
                raise TranslationError(
                    f"{field}.disposition", f"sessions are not {self.service} messages"
                )
            kind = self._kind(part)
            c.check_size(
                self.limits.media[kind], part.size, f"{field}.size", f"a {self.service} {kind}"
            )
            attachment = {"type": kind, "payload": {"url": part.url}}
            side = c.part_side(part, _attachment_part(kind, part.url))
            return [c.with_side({"attachment": attachment}, {}, side)]
        if isinstance(part, SinglePart) and c.is_text(part):
            text = c.part_text(part, field)
            c.check_text(self.limits, text, f"{field}.content", self.service)
            return [c.with_side({"text": text}, {}, c.part_side(part, c.text_part(text)))]
        if isinstance(part, SinglePart):
            raise TranslationError(
                f"{field}.contentType",
                f"{self.service} cannot carry {c.base_type(part.content_type)}",
            )
        raise TranslationError(field, "an empty part carries nothing to send")

    def content_to_native(
        self, content: MimiContent, *, refs: MessageRefs | None = None
    ) -> list[dict[str, Any]]:
        """Translate MIMI content to Send API objects (usually one; see module doc)."""
        intent = intent_of(content)
        service = self.service
        if intent.action in ("react", "unreact"):
            assert intent.target is not None
            payload: dict[str, Any] = {
                "message_id": native_ref(refs, service, intent.target, "inReplyTo")
            }
            implied: NestedPart = c.UNREACT
            if intent.action == "react":
                payload["reaction"] = c.reaction_emoji(intent.part, "nestedPart")
                implied = c.reaction_part(payload["reaction"])
            obj: dict[str, Any] = {"sender_action": intent.action, "payload": payload}
            side = c.message_side(content, carry_replaces=True)
            return [c.with_side(obj, side, c.part_side(intent.part, implied))]
        if intent.action == "delete":
            assert intent.target is not None
            if not self.can_unsend:
                raise TranslationError("replaces", f"{service} has no unsend")
            mid = native_ref(refs, service, intent.target, "replaces")
            obj = {"mid": mid, "is_deleted": True}
            if intent.reply_to is not None:
                obj["reply_to"] = {"mid": native_ref(refs, service, intent.reply_to, "inReplyTo")}
            return [c.with_side(obj, c.message_side(content), c.part_side(intent.part, c.DELETED))]
        story = content.extensions.get(STORY_EXT)
        if story is not None:
            rest = tuple(u for u in content.extensions.unknown if u.key != STORY_EXT)
            content = msgspec.structs.replace(
                content, extensions=msgspec.structs.replace(content.extensions, unknown=rest)
            )
        side = c.message_side(content)
        natives = c.flatten(intent.part, "nestedPart", self._leaf)
        if intent.action == "edit":
            assert intent.target is not None
            if len(natives) != 1 or "text" not in natives[0]:
                raise TranslationError("nestedPart", f"{service} edits carry text only")
            mid = native_ref(refs, service, intent.target, "replaces")
            edit = {"mid": mid, "text": natives[0]["text"]}
            part_side = natives[0].get(c.SIDE, {}).get("part", {})
            return [c.with_side({"message_edit": edit}, side, part_side)]
        if story is not None:
            natives[0]["reply_to"] = {"story": story.value}
        elif intent.reply_to is not None:
            natives[0]["reply_to"] = {
                "mid": native_ref(refs, service, intent.reply_to, "inReplyTo")
            }
        if side:
            for native in natives:
                native[c.SIDE] = side | native.get(c.SIDE, {})
        return natives

    # -- from native ----------------------------------------------------------------------

    def native_to_content(
        self, obj: Any, *, refs: MessageRefs | None = None, path: str = "message"
    ) -> MimiContent:
        """Translate a Send API object (or webhook message) to MIMI content."""
        obj = c.as_obj(obj, path)
        message_side, part_side = c.read_side(obj, path)
        service = self.service
        action = obj.get("sender_action")
        if action in ("react", "unreact"):
            payload = c.get_obj(obj, "payload", path)
            target = mimi_ref(refs, service, c.get_id(payload, "message_id", f"{path}.payload"))
            emoji = c.get_str(payload, "reaction", f"{path}.payload") if action == "react" else ""
            implied = c.reaction_part(emoji) if emoji else c.UNREACT
            part = c.apply_part_side(implied, part_side, path)
            return c.build_content(part, message_side, path, in_reply_to=target)
        if action is not None:
            raise TranslationError(f"{path}.sender_action", f"not content: {action!r}")
        if "message_edit" in obj:
            edit = c.get_obj(obj, "message_edit", path)
            target = mimi_ref(refs, service, c.get_id(edit, "mid", f"{path}.message_edit"))
            text = c.get_str(edit, "text", f"{path}.message_edit")
            part = c.apply_part_side(c.text_part(text), part_side, path)
            return c.build_content(part, message_side, path, replaces=target)
        reply_to, story = None, None
        if "reply_to" in obj:
            reply = c.get_obj(obj, "reply_to", path)
            if "story" in reply:
                story = UnknownExtension.of(
                    STORY_EXT, c.get_obj(reply, "story", f"{path}.reply_to")
                )
            else:
                reply_to = mimi_ref(refs, service, c.get_id(reply, "mid", f"{path}.reply_to"))
        if obj.get("is_deleted") is True:
            target = mimi_ref(refs, service, c.get_id(obj, "mid", path))
            part = c.apply_part_side(c.DELETED, part_side, path)
            return c.build_content(part, message_side, path, in_reply_to=reply_to, replaces=target)
        parts = self._parts(obj, path)
        if len(parts) == 1:
            parts = [c.apply_part_side(parts[0], part_side, path)]
        content = c.build_content(c.assemble(parts), message_side, path, in_reply_to=reply_to)
        if story is not None:
            ext = content.extensions
            extensions = Extensions(
                sender_uri=ext.sender_uri, room_uri=ext.room_uri, unknown=(*ext.unknown, story)
            )
            content = msgspec.structs.replace(content, extensions=extensions)
        return content

    def _parts(self, obj: dict[str, Any], path: str) -> list[NestedPart]:
        parts: list[NestedPart] = []
        if "text" in obj:
            parts.append(c.text_part(c.get_str(obj, "text", path)))
        attachments = [obj["attachment"]] if "attachment" in obj else obj.get("attachments", [])
        if not isinstance(attachments, list):
            raise TranslationError(f"{path}.attachments", "expected an array")
        for i, attachment in enumerate(attachments):
            apath = f"{path}.attachments[{i}]"
            attachment = c.as_obj(attachment, apath)
            kind = c.get_str(attachment, "type", apath)
            if kind not in ATTACHMENT_KINDS:
                raise TranslationError(
                    f"{apath}.type", f"unsupported {self.service} attachment {kind!r}"
                )
            payload = c.get_obj(attachment, "payload", apath)
            parts.append(_attachment_part(kind, c.get_str(payload, "url", f"{apath}.payload")))
        if not parts:
            raise TranslationError(path, "a message needs text or an attachment")
        return parts


def _attachment_part(kind: str, url: str) -> ExternalPart:
    disposition = Disposition.ATTACHMENT if kind == "file" else Disposition.RENDER
    return ExternalPart(disposition=disposition, content_type=_DEFAULT_TYPES[kind], url=url)
