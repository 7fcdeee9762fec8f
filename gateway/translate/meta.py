"""Messenger Platform webhooks and Send API requests <-> neutral, for Messenger and Instagram.

Both services share the Messenger Platform shapes: webhooks `{"object": "page" | "instagram",
"entry": [{"id", "time", "messaging": [event]}]}` and Send API requests `{"recipient": {"id"},
"message" | "sender_action"}`. The platform user plays the Page / professional account.

Degradations: reactions, edits and unsends carry only the target's mid natively, so their
neutral ids are derived (`<mid>:<action>:<timestamp>`); several native messages from one MIMI
message get mids `<id>.1`, `<id>.2`...; Messenger reads are watermarks (every message up to
`watermark` is read; a known mid is sent along); Instagram has no delivery receipts; no service
sends typing in webhooks (typing is a Send API sender_action, see `typing_to_native`); page
echoes (`is_echo`) are skipped, being the platform user's own messages.
"""

from __future__ import annotations

from typing import Any

from gateway.translate import common as c
from gateway.translate.errors import TranslationError
from gateway.translate.meta_content import MetaContent
from gateway.translate.neutral import (
    Envelope,
    Kind,
    MessageRefs,
    NeutralEvent,
    Receipt,
    UserDirectory,
    native_user_id,
    receipt_event,
    user_uri,
)

# Messenger names reactions (message-reactions webhook); anything else is "other".
_REACTION_NAMES = {
    "❤": "love",
    "❤️": "love",
    "😆": "smile",
    "😄": "smile",
    "😮": "wow",
    "😢": "sad",
    "😠": "angry",
    "👍": "like",
    "👎": "dislike",
}


class MetaTranslator(MetaContent):
    """Translator for one Messenger-Platform service."""

    def __init__(
        self, service: str, webhook_object: str, *, can_unsend: bool, can_deliver: bool
    ) -> None:
        super().__init__(service, can_unsend=can_unsend)
        self.webhook_object = webhook_object
        self.can_deliver = can_deliver

    def native_user_id(self, uri: str, key: bytes = b"") -> str:
        """The PSID/IGSID-like native id of a user URI."""
        return native_user_id(self.service, uri, key)

    def user_uri(self, native_id: str, users: UserDirectory | None = None) -> str:
        """The URI of a native id."""
        return user_uri(self.service, native_id, users)

    # -- webhooks -------------------------------------------------------------------------

    def _messaging(self, event: NeutralEvent, refs: MessageRefs | None) -> list[dict[str, Any]]:
        env = event.envelope
        if env.kind == "message":
            if event.content is None:
                raise TranslationError("content", "a message needs content")
            return [
                self._event_of(obj, env, i)
                for i, obj in enumerate(self.content_to_native(event.content, refs=refs))
            ]
        if env.kind == "receipt" and event.receipt is not None:
            receipt = event.receipt
            if receipt.status == "delivered":
                if not self.can_deliver:
                    raise TranslationError(
                        "receipt.status", f"{self.service} has no delivery receipts"
                    )
                return [{"delivery": {"mids": [receipt.message_id], "watermark": env.sent_at}}]
            if receipt.status == "read":
                read: dict[str, Any] = {"mid": receipt.message_id} if receipt.message_id else {}
                if self.can_deliver:  # Messenger counts reads by watermark
                    read["watermark"] = receipt.watermark or env.sent_at
                return [{"read": read}]
            raise TranslationError(
                "receipt.status", f"{self.service} reports only delivered and read"
            )
        raise TranslationError(
            "kind", f"{self.service} webhooks carry no typing; use typing_to_native"
        )

    def _event_of(self, obj: dict[str, Any], env: Envelope, index: int) -> dict[str, Any]:
        mid = env.id if index == 0 else f"{env.id}.{index}"
        action = obj.get("sender_action")
        if action is not None:
            payload = obj["payload"]
            reaction: dict[str, Any] = {"mid": payload["message_id"], "action": action}
            if action == "react":
                emoji = payload["reaction"]
                reaction |= {"reaction": _REACTION_NAMES.get(emoji, "other"), "emoji": emoji}
            if c.SIDE in obj:
                reaction[c.SIDE] = obj[c.SIDE]
            return {"reaction": reaction}
        if "message_edit" in obj:
            edit = {**obj["message_edit"], "num_edit": 1}
            if c.SIDE in obj:
                edit[c.SIDE] = obj[c.SIDE]
            return {"message_edit": edit}
        if obj.get("is_deleted"):
            return {"message": obj}
        message = {"mid": mid, **obj}
        if "attachment" in message:
            message["attachments"] = [message.pop("attachment")]
        return {"message": message}

    def webhook_from_neutral(
        self, event: NeutralEvent, *, refs: MessageRefs | None = None, key: bytes = b""
    ) -> dict[str, Any]:
        """Render a neutral message or receipt as the webhook the recipient's side receives."""
        env = event.envelope
        sender = {"id": native_user_id(self.service, env.sender, key)}
        recipient = native_user_id(self.service, env.recipient, key)
        head = {"sender": sender, "recipient": {"id": recipient}, "timestamp": env.sent_at}
        messaging = [head | body for body in self._messaging(event, refs)]
        entry = {"id": recipient, "time": env.sent_at, "messaging": messaging}
        return {"object": self.webhook_object, "entry": [entry]}

    def messaging_event_to_neutral(
        self,
        event: Any,
        *,
        users: UserDirectory | None = None,
        refs: MessageRefs | None = None,
        path: str = "messaging",
    ) -> list[NeutralEvent]:
        """Parse one `entry[].messaging[]` event into neutral events."""
        event = c.as_obj(event, path)
        sender = user_uri(
            self.service, c.get_id(c.get_obj(event, "sender", path), "id", f"{path}.sender"), users
        )
        recipient = user_uri(
            self.service,
            c.get_id(c.get_obj(event, "recipient", path), "id", f"{path}.recipient"),
            users,
        )
        sent_at = c.timestamp_ms(event.get("timestamp"), f"{path}.timestamp", unit_ms=1)

        def envelope(id: str, kind: Kind = "message") -> Envelope:
            return Envelope(id=id, sender=sender, recipient=recipient, sent_at=sent_at, kind=kind)

        if "message" in event:
            message = c.get_obj(event, "message", path)
            if message.get("is_echo") is True:
                return []
            mid = c.get_id(message, "mid", f"{path}.message")
            content = self.native_to_content(message, refs=refs, path=f"{path}.message")
            id_ = f"{mid}:deleted" if message.get("is_deleted") is True else mid
            return [NeutralEvent(envelope=envelope(id_), content=content)]
        if "reaction" in event:
            reaction = c.get_obj(event, "reaction", path)
            rpath = f"{path}.reaction"
            action = c.get_str(reaction, "action", rpath)
            if action not in ("react", "unreact"):
                raise TranslationError(f"{rpath}.action", "expected react or unreact")
            payload = {"message_id": c.get_id(reaction, "mid", rpath)}
            if action == "react":
                payload["reaction"] = c.get_str(reaction, "emoji", rpath)
            obj = {"sender_action": action, "payload": payload}
            if c.SIDE in reaction:
                obj[c.SIDE] = reaction[c.SIDE]
            content = self.native_to_content(obj, refs=refs, path=rpath)
            return [
                NeutralEvent(
                    envelope=envelope(f"{payload['message_id']}:{action}:{sent_at}"),
                    content=content,
                )
            ]
        if "message_edit" in event:
            edit = c.get_obj(event, "message_edit", path)
            content = self.native_to_content(
                {"message_edit": edit, **({c.SIDE: edit[c.SIDE]} if c.SIDE in edit else {})},
                refs=refs,
                path=path,
            )
            mid = c.get_id(edit, "mid", f"{path}.message_edit")
            return [NeutralEvent(envelope=envelope(f"{mid}:edit:{sent_at}"), content=content)]
        if "delivery" in event:
            delivery = c.get_obj(event, "delivery", path)
            mids = c.get_list(delivery, "mids", f"{path}.delivery") if "mids" in delivery else []
            return [
                receipt_event(
                    c.get_id({"mid": m}, "mid", f"{path}.delivery.mids[{i}]"),
                    "delivered",
                    sender=sender,
                    recipient=recipient,
                    sent_at=sent_at,
                )
                for i, m in enumerate(mids)
            ]
        if "read" in event:
            read = c.get_obj(event, "read", path)
            if "mid" in read:
                mid = c.get_id(read, "mid", f"{path}.read")
                return [
                    receipt_event(mid, "read", sender=sender, recipient=recipient, sent_at=sent_at)
                ]
            watermark = c.timestamp_ms(read.get("watermark"), f"{path}.read.watermark", unit_ms=1)
            receipt = Receipt(message_id="", status="read", watermark=watermark)
            return [
                NeutralEvent(envelope=envelope(f"read:{watermark}", "receipt"), receipt=receipt)
            ]
        raise TranslationError(path, f"unsupported {self.service} messaging event")

    def webhook_to_neutral(
        self,
        payload: bytes | str | dict[str, Any],
        *,
        users: UserDirectory | None = None,
        refs: MessageRefs | None = None,
    ) -> list[NeutralEvent]:
        """Parse a `page` / `instagram` webhook into neutral events."""
        doc = c.load_json(payload)
        if doc.get("object", self.webhook_object) != self.webhook_object:
            raise TranslationError("object", f"expected {self.webhook_object!r}")
        events: list[NeutralEvent] = []
        for path, item in c.webhook_items(doc, "messaging"):
            events.extend(self.messaging_event_to_neutral(item, users=users, refs=refs, path=path))
        return events

    # -- Send API -------------------------------------------------------------------------

    def send_request_from_neutral(
        self, event: NeutralEvent, *, refs: MessageRefs | None = None, key: bytes = b""
    ) -> list[dict[str, Any]]:
        """Render a neutral message or read receipt as Send API request bodies."""
        env = event.envelope
        recipient = {"id": native_user_id(self.service, env.recipient, key)}
        if env.kind == "message" and event.content is not None:
            out = []
            for obj in self.content_to_native(event.content, refs=refs):
                if "message_edit" in obj or "is_deleted" in obj:
                    raise TranslationError(
                        "replaces", f"the {self.service} Send API cannot edit or unsend"
                    )
                if "sender_action" in obj:
                    out.append({"recipient": recipient, **obj})
                else:
                    out.append(
                        {"recipient": recipient, "messaging_type": "RESPONSE", "message": obj}
                    )
            return out
        if env.kind == "receipt" and event.receipt is not None and event.receipt.status == "read":
            return [{"recipient": recipient, "sender_action": "mark_seen"}]
        if env.kind == "typing":
            return [self.typing_to_native(event, key=key)]
        raise TranslationError("receipt.status", f"{self.service} senders only report reads")

    def typing_to_native(
        self, event: NeutralEvent, *, key: bytes = b"", message_id: str | None = None
    ) -> dict[str, Any]:
        """The Send API sender_action for a typing event (`typing_on` / `typing_off`)."""
        recipient = {"id": native_user_id(self.service, event.envelope.recipient, key)}
        return {"recipient": recipient, "sender_action": f"typing_{event.typing or 'off'}"}

    def send_request_to_neutral(
        self,
        body: bytes | str | dict[str, Any],
        *,
        sender: str,
        id: str,
        sent_at: int,
        recipient: str | None = None,
        users: UserDirectory | None = None,
        refs: MessageRefs | None = None,
    ) -> list[NeutralEvent]:
        """Parse a Send API request of the platform user `sender` into neutral events."""
        doc = c.load_json(body)
        to = user_uri(
            self.service, c.get_id(c.get_obj(doc, "recipient", ""), "id", "recipient"), users
        )

        def envelope(kind: Kind) -> Envelope:
            return Envelope(id=id, sender=sender, recipient=to, sent_at=sent_at, kind=kind)

        action = doc.get("sender_action")
        if action in ("typing_on", "typing_off"):
            return [NeutralEvent(envelope=envelope("typing"), typing=action[7:])]
        if action == "mark_seen":
            receipt = Receipt(message_id="", status="read", watermark=sent_at)
            return [NeutralEvent(envelope=envelope("receipt"), receipt=receipt)]
        obj = doc if action is not None else c.get_obj(doc, "message", "")
        content = self.native_to_content(obj, refs=refs, path="message" if action is None else "")
        return [NeutralEvent(envelope=envelope("message"), content=content)]
