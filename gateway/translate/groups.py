"""Group traffic, native <-> neutral (DESIGN §4.10; `shared/fixtures/native/GROUPS.md`).

A group is `mimi://<service>/g/<group id>`, the id being the hub service's own, never parsed.
On one member's side a group item is a `GroupEvent`: a neutral message or receipt whose
`recipient` is that member, or a membership change, in `group`.

WhatsApp (Cloud API Groups): inbound messages carry `group_id` (`from` names the participant);
statuses for a group carry `recipient_type: "group"` (`recipient_id` the group, and for
`delivered` / `read` the participant in `recipient_participant_id`); membership changes are
`group_participants_update` webhooks (`group_participants_add` / `_remove`); a send is a
`/messages` body with `recipient_type: "group"` and `to` the group id.
Messenger and Instagram publish no group webhook, so their 1:1 `messaging` events are extended
with `thread: {id, thread_type: "GROUP"}` (the naming of Messenger's webview context), and a
membership change is such an event carrying `group_membership: {added: [{id}], removed: [{id}]}`.
Degradations: WhatsApp names no author of a change (only `initiated_by`), so `by` is lost there.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from gateway.translate import common as c
from gateway.translate import whatsapp
from gateway.translate.errors import TranslationError
from gateway.translate.meta import MetaTranslator
from gateway.translate.neutral import (
    Envelope,
    MessageRefs,
    NeutralEvent,
    UserDirectory,
    native_user_id,
    receipt_event,
    user_uri,
)
from gateway.translate.whatsapp_wire import OBJECT, neutral_id, wamid, webhook_contact

GROUP_SERVICES = ("whatsapp", "messenger", "instagram")
THREAD_TYPE = "GROUP"
Initiator = Literal["business", "participant"]


class Membership(msgspec.Struct, frozen=True, kw_only=True):
    """Who joined and who left (user URIs), at `sent_at` (ms); `by` where the service names it."""

    sent_at: int
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    by: str | None = None
    initiated_by: Initiator | None = None


class GroupEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One group item as the member `member` receives it: `event` or `membership`."""

    group: str
    member: str
    event: NeutralEvent | None = None
    membership: Membership | None = None


def group_uri(service: str, group_id: str) -> str:
    """`mimi://<service>/g/<group id>`."""
    if service not in GROUP_SERVICES:
        raise TranslationError("service", f"unknown service {service!r}")
    if not group_id or "/" in group_id:
        raise TranslationError("group_id", "expected a non-empty id without '/'")
    return f"mimi://{service}/g/{group_id}"


def parse_group_uri(uri: str) -> tuple[str, str] | None:
    """(authority, group id) of anything shaped `mimi://<authority>/g/<id>`, else None."""
    if uri.startswith("mimi://"):
        service, sep, gid = uri[7:].partition("/g/")
        if sep and gid and "/" not in gid:
            return service, gid
    return None


def split_group_uri(uri: str, field: str = "group") -> tuple[str, str]:
    """(service, native group id) of a group URI of one of the three services."""
    parsed = parse_group_uri(uri)
    if parsed is None or parsed[0] not in GROUP_SERVICES:
        raise TranslationError(field, "expected a group URI mimi://<service>/g/<id>")
    return parsed


# -- WhatsApp -----------------------------------------------------------------------------


def _whatsapp_message(
    value: dict[str, Any], msg: dict[str, Any], path: str, users: UserDirectory | None,
    refs: MessageRefs | None,
) -> GroupEvent:  # fmt: skip
    gid = c.get_id(msg, "group_id", path)
    one = {k: v for k, v in msg.items() if k != "group_id"}
    sub = {"metadata": value.get("metadata"), "contacts": value.get("contacts", [])}
    doc = {"object": OBJECT, "entry": [{"changes": [{"field": "messages", "value": sub}]}]}
    sub["messages"] = [one]
    try:
        (event,) = whatsapp.webhook_to_neutral(doc, users=users, refs=refs)
    except TranslationError as exc:
        raise TranslationError(path, exc.reason) from None
    return GroupEvent(
        group=group_uri("whatsapp", gid), member=event.envelope.recipient, event=event
    )


def _whatsapp_status(
    status: dict[str, Any], member: str, path: str, users: UserDirectory | None
) -> GroupEvent:
    state = c.get_str(status, "status", path)
    if state not in ("sent", "delivered", "read", "failed"):
        raise TranslationError(f"{path}.status", f"unknown status {state!r}")
    group = group_uri("whatsapp", c.get_id(status, "recipient_id", path))
    reader = status.get("recipient_participant_id")
    errors = status.get("errors") or [{}]
    error = c.as_obj(errors[0] if isinstance(errors, list) else None, f"{path}.errors[0]")
    code, title = error.get("code"), error.get("title")
    event = receipt_event(
        neutral_id(c.get_str(status, "id", path)),
        state,  # type: ignore[arg-type]
        sender=group
        if reader is None
        else user_uri("whatsapp", c.get_id(status, "recipient_participant_id", path), users),
        recipient=member,
        sent_at=c.timestamp_ms(status.get("timestamp"), f"{path}.timestamp", unit_ms=1000),
        error_code=code if type(code) is int else None,
        error_title=title if isinstance(title, str) else None,
    )
    return GroupEvent(group=group, member=member, event=event)


def _participants(
    change: dict[str, Any], key: str, path: str, users: UserDirectory | None
) -> tuple[str, ...]:
    if key not in change:
        return ()
    uris = []
    for i, item in enumerate(c.get_list(change, key, path)):
        ipath = f"{path}.{key}[{i}]"
        item = c.as_obj(item, ipath)
        native = item.get("wa_id") if "wa_id" in item else c.get_str(item, "input", ipath)
        if not isinstance(native, str) or not native.lstrip("+"):
            raise TranslationError(ipath, "expected a wa_id or an input phone number")
        uris.append(user_uri("whatsapp", native.lstrip("+"), users))
    return tuple(uris)


def _whatsapp_membership(
    item: dict[str, Any], member: str, path: str, users: UserDirectory | None
) -> GroupEvent | None:
    kind = c.get_str(item, "type", path)
    if kind not in ("group_participants_add", "group_participants_remove"):
        return None  # join requests are for the group's admin number, not members
    initiated = item.get("initiated_by")
    membership = Membership(
        sent_at=c.timestamp_ms(item.get("timestamp"), f"{path}.timestamp", unit_ms=1000),
        added=_participants(item, "added_participants", path, users),
        removed=_participants(item, "removed_participants", path, users),
        initiated_by=initiated if initiated in ("business", "participant") else None,
    )
    gid = c.get_id(item, "group_id", path)
    return GroupEvent(group=group_uri("whatsapp", gid), member=member, membership=membership)


def whatsapp_webhook_to_group_events(
    payload: bytes | str | dict[str, Any],
    *,
    users: UserDirectory | None = None,
    refs: MessageRefs | None = None,
) -> list[GroupEvent]:
    """The group items of a `whatsapp_business_account` webhook (1:1 items are left out)."""
    doc = c.load_json(payload)
    if doc.get("object") != OBJECT:
        raise TranslationError("object", f"expected {OBJECT!r}")
    items: list[GroupEvent] = []
    for cpath, change in c.webhook_items(doc, "changes"):
        field = change.get("field")
        if field not in ("messages", "group_participants_update"):
            continue
        vpath = f"{cpath}.value"
        value = c.get_obj(change, "value", cpath)
        metadata = c.get_obj(value, "metadata", vpath)
        phone = c.get_id(metadata, "display_phone_number", f"{vpath}.metadata")
        member = user_uri("whatsapp", phone, users)
        if field == "group_participants_update":
            for k, group in enumerate(c.get_list(value, "groups", vpath)):
                gpath = f"{vpath}.groups[{k}]"
                found = _whatsapp_membership(c.as_obj(group, gpath), member, gpath, users)
                if found is not None:
                    items.append(found)
            continue
        for k, msg in enumerate(value.get("messages") or []):
            mpath = f"{vpath}.messages[{k}]"
            msg = c.as_obj(msg, mpath)
            if "group_id" in msg:
                items.append(_whatsapp_message(value, msg, mpath, users, refs))
        for k, status in enumerate(value.get("statuses") or []):
            spath = f"{vpath}.statuses[{k}]"
            status = c.as_obj(status, spath)
            if status.get("recipient_type") == "group":
                items.append(_whatsapp_status(status, member, spath, users))
    return items


def _whatsapp_value(field: str, member: str, value: dict[str, Any]) -> dict[str, Any]:
    metadata = {"display_phone_number": member, "phone_number_id": member}
    change = {"value": {"messaging_product": "whatsapp", "metadata": metadata, **value}}
    return {"object": OBJECT, "entry": [{"id": member, "changes": [change | {"field": field}]}]}


def whatsapp_group_webhooks(
    item: GroupEvent, *, refs: MessageRefs | None = None, key: bytes = b""
) -> list[dict[str, Any]]:
    """Render a group item as the webhooks its member receives (a membership change that both
    adds and removes gives two, as Cloud API never mixes change types in one webhook)."""
    _, gid = split_group_uri(item.group)
    member = native_user_id("whatsapp", item.member, key)
    if item.membership is not None:
        m = item.membership
        head = {"timestamp": str(m.sent_at // 1000), "group_id": gid}
        out = []
        if m.added:
            added = [{"wa_id": native_user_id("whatsapp", u, key)} for u in m.added]
            body = head | {"type": "group_participants_add", "added_participants": added}
            out.append(_whatsapp_value("group_participants_update", member, {"groups": [body]}))
        if m.removed:
            by = m.initiated_by or "business"
            ids = [native_user_id("whatsapp", u, key) for u in m.removed]
            removed = [{"wa_id": n} if by == "participant" else {"input": "+" + n} for n in ids]
            body = head | {
                "type": "group_participants_remove",
                "removed_participants": removed,
                "initiated_by": by,
            }
            out.append(_whatsapp_value("group_participants_update", member, {"groups": [body]}))
        return out
    event = item.event
    if event is None:
        raise TranslationError("event", "a group item needs an event or a membership change")
    if event.envelope.recipient != item.member:
        raise TranslationError("event.to", "a group event goes to its member")
    env = event.envelope
    if env.kind == "message":
        doc = whatsapp.webhook_from_neutral(event, refs=refs, key=key)
        for message in doc["entry"][0]["changes"][0]["value"]["messages"]:
            message["group_id"] = gid
        return [doc]
    receipt = event.receipt
    if env.kind != "receipt" or receipt is None:
        raise TranslationError("kind", "whatsapp groups carry messages and statuses")
    status: dict[str, Any] = {
        "id": wamid(receipt.message_id),
        "status": receipt.status,
        "timestamp": str(env.sent_at // 1000),
        "recipient_id": gid,
        "recipient_type": "group",
    }
    value: dict[str, Any] = {"statuses": [status]}
    if env.sender != item.group:
        contact = webhook_contact(native_user_id("whatsapp", env.sender, key), event.sender_name)
        status["recipient_participant_id"] = contact["wa_id"]
        status["recipient_participant_user_id"] = contact["user_id"]
        value = {"contacts": [contact]} | value
    if receipt.error_code is not None or receipt.error_title is not None:
        title = receipt.error_title or ""
        status["errors"] = [{"code": receipt.error_code or 0, "title": title, "message": title}]
    return [_whatsapp_value("messages", member, value)]


def whatsapp_group_send_from_neutral(
    event: NeutralEvent, *, refs: MessageRefs | None = None
) -> list[dict[str, Any]]:
    """A message to a group (`recipient` the group URI) as Cloud API `/messages` bodies."""
    service, gid = split_group_uri(event.envelope.recipient, "to")
    if service != "whatsapp" or event.envelope.kind != "message" or event.content is None:
        raise TranslationError("to", "expected a message to a whatsapp group")
    head = {"messaging_product": "whatsapp", "recipient_type": "group", "to": gid}
    return [head | obj for obj in whatsapp.content_to_native(event.content, refs=refs)]


def whatsapp_group_send_to_neutral(
    body: bytes | str | dict[str, Any],
    *,
    sender: str,
    id: str,
    sent_at: int,
    refs: MessageRefs | None = None,
) -> NeutralEvent:
    """A `/messages` body with `recipient_type: "group"` -> a message to the group's URI."""
    doc = c.load_json(body)
    if doc.get("messaging_product", "whatsapp") != "whatsapp":
        raise TranslationError("messaging_product", "expected 'whatsapp'")
    if doc.get("recipient_type") != "group":
        raise TranslationError("recipient_type", "expected 'group'")
    to = group_uri("whatsapp", c.get_id(doc, "to", ""))
    obj = {k: v for k, v in doc.items() if k not in ("messaging_product", "recipient_type", "to")}
    content = whatsapp.native_to_content(obj, refs=refs, path="body")
    env = Envelope(id=id, sender=sender, recipient=to, sent_at=sent_at)
    return NeutralEvent(envelope=env, content=content)


# -- Messenger / Instagram ----------------------------------------------------------------


def meta_group_webhook(
    translator: MetaTranslator,
    item: GroupEvent,
    *,
    refs: MessageRefs | None = None,
    key: bytes = b"",
) -> dict[str, Any]:
    """Render a group item as the member's 1:1 envelope extended with `thread`."""
    service, gid = split_group_uri(item.group)
    if service != translator.service:
        raise TranslationError("group", f"not a {translator.service} group")
    thread = {"id": gid, "thread_type": THREAD_TYPE}
    member = native_user_id(service, item.member, key)
    if item.membership is not None:
        m = item.membership
        change = {
            "added": [{"id": native_user_id(service, u, key)} for u in m.added],
            "removed": [{"id": native_user_id(service, u, key)} for u in m.removed],
        }
        event = {
            "sender": {"id": native_user_id(service, m.by, key) if m.by else gid},
            "recipient": {"id": member},
            "timestamp": m.sent_at,
            "thread": thread,
            "group_membership": change,
        }
        entry = {"id": member, "time": m.sent_at, "messaging": [event]}
        return {"object": translator.webhook_object, "entry": [entry]}
    if item.event is None or item.event.envelope.recipient != item.member:
        raise TranslationError("event", "a group item needs an event to its member")
    doc = translator.webhook_from_neutral(item.event, refs=refs, key=key)
    for messaging in doc["entry"][0]["messaging"]:
        messaging["thread"] = dict(thread)
    return doc


def meta_webhook_to_group_events(
    translator: MetaTranslator,
    payload: bytes | str | dict[str, Any],
    *,
    users: UserDirectory | None = None,
    refs: MessageRefs | None = None,
) -> list[GroupEvent]:
    """The group items (events with a GROUP `thread`) of a `page` / `instagram` webhook."""
    service = translator.service
    doc = c.load_json(payload)
    if doc.get("object", translator.webhook_object) != translator.webhook_object:
        raise TranslationError("object", f"expected {translator.webhook_object!r}")
    items: list[GroupEvent] = []
    for path, event in c.webhook_items(doc, "messaging"):
        thread = event.get("thread")
        if not isinstance(thread, dict) or thread.get("thread_type") != THREAD_TYPE:
            continue
        group = group_uri(service, c.get_id(thread, "id", f"{path}.thread"))
        recipient = c.get_id(c.get_obj(event, "recipient", path), "id", f"{path}.recipient")
        member = user_uri(service, recipient, users)
        if "group_membership" in event:
            change = c.get_obj(event, "group_membership", path)
            cpath = f"{path}.group_membership"
            sender = c.get_id(c.get_obj(event, "sender", path), "id", f"{path}.sender")

            def uris(key: str, change: dict[str, Any] = change, cpath: str = cpath) -> tuple:
                found = c.get_list(change, key, cpath) if key in change else []
                return tuple(
                    user_uri(service, c.get_id(c.as_obj(x, cpath), "id", cpath), users)
                    for x in found
                )

            membership = Membership(
                sent_at=c.timestamp_ms(event.get("timestamp"), f"{path}.timestamp", unit_ms=1),
                added=uris("added"),
                removed=uris("removed"),
                by=None if sender == thread["id"] else user_uri(service, sender, users),
            )
            items.append(GroupEvent(group=group, member=member, membership=membership))
            continue
        plain = {k: v for k, v in event.items() if k != "thread"}
        for neutral in translator.messaging_event_to_neutral(
            plain, users=users, refs=refs, path=path
        ):
            items.append(GroupEvent(group=group, member=member, event=neutral))
    return items
