"""MIMI content <-> WhatsApp Cloud API message objects (DESIGN §4.5, §5).

The native object is the `/messages` body without `messaging_product`, `recipient_type` and `to`
(`{"type": "text", "text": {"body": "hi"}}`); the parser also takes webhook `messages[]` items
(`context.id`, media `url`/`id`). Mapping, and how what WhatsApp cannot say degrades:

- text/plain and text/markdown -> text (markup is sent as typed; the media type rides in `mimi`)
- ExternalPart -> image / video / audio (disposition inline = voice note) / sticker (image/webp;
  over 100 KB means animated) / document (disposition attachment, or a media type the kind does
  not accept); description -> caption; AES key, nonce, size etc. ride in `mimi` (common.py)
- application/geo+json (RFC 7946 Point) -> location; text/vcard (RFC 6350) -> contacts
- reaction / unlike (draft §4.3, §4.7) -> reaction with emoji / empty emoji
- replaces + body -> edit; replaces + null part -> revoke; inReplyTo -> context
- multipart: chooseOne -> first expressible alternative; processAll -> one message per part;
  singleUnit of text + one captionable medium -> that medium with the text as caption
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, cast

import msgspec

from gateway.content import (
    Disposition,
    Extensions,
    ExternalPart,
    MimiContent,
    MultiPart,
    NestedPart,
    SinglePart,
    UnknownExtension,
)
from gateway.translate import common as c
from gateway.translate.errors import TranslationError
from gateway.translate.intent import intent_of, mimi_ref, native_ref
from gateway.translate.limits import LIMITS, WHATSAPP_STATIC_STICKER_MAX
from gateway.translate.neutral import MessageRefs
from gateway.translate.vcard import contacts_to_vcard, vcard_to_contacts

SERVICE = "whatsapp"
LIMITS_WA = LIMITS[SERVICE]
MEDIA_URN = "whatsapp-media:"  # a native media id that came without a URL
INTERACTIVE_EXT = "whatsappInteractive"  # private-use extension key (draft §2.3)
MEDIA_KINDS = ("image", "video", "audio", "document", "sticker")
_CAPTIONED = frozenset({"image", "video", "document"})
_DEFAULT_TYPES = {
    "image": "image/jpeg",
    "video": "video/mp4",
    "audio": "audio/ogg",
    "document": "application/octet-stream",
    "sticker": "image/webp",
}


def _media_kind(part: ExternalPart) -> str:
    ctype = c.base_type(part.content_type)
    if part.disposition == Disposition.ATTACHMENT:
        return "document"
    if ctype == "image/webp":
        return "sticker"
    major = ctype.split("/", 1)[0]
    if major in ("image", "audio", "video") and c.accepts(LIMITS_WA.media[major], ctype):
        return major
    return "document"


def _disposition(kind: str, voice: bool) -> int:
    if kind == "document":
        return Disposition.ATTACHMENT
    return Disposition.INLINE if voice else Disposition.RENDER


def _media(part: ExternalPart, field: str) -> dict[str, Any]:
    if part.disposition == Disposition.SESSION:
        raise TranslationError(f"{field}.disposition", "sessions are not whatsapp messages")
    kind = _media_kind(part)
    voice = kind == "audio" and part.disposition == Disposition.INLINE
    c.check_size(LIMITS_WA.media[kind], part.size, f"{field}.size", f"a whatsapp {kind}")
    media: dict[str, Any]
    if part.url.startswith(MEDIA_URN):
        media = {"id": part.url.removeprefix(MEDIA_URN)}
    else:
        media = {"link": part.url}
    media["mime_type"] = part.content_type
    sha = part.content_hash if part.hash_alg == 1 and part.content_hash else b""
    if sha:
        media["sha256"] = base64.b64encode(sha).decode()
    caption = part.description if kind in _CAPTIONED else ""
    if caption:
        c.check_caption(LIMITS_WA, caption, f"{field}.description", SERVICE)
        media["caption"] = caption
    filename = part.filename if kind == "document" else ""
    if filename:
        media["filename"] = filename
    if kind == "audio":
        media["voice"] = voice
    if kind == "sticker":
        media["animated"] = part.size > WHATSAPP_STATIC_STICKER_MAX
    implied = _media_part(kind, media, field)
    return c.with_side({"type": kind, kind: media}, {}, c.part_side(part, implied))


def _media_part(kind: str, media: dict[str, Any], path: str) -> ExternalPart:
    url = media.get("link") or media.get("url")
    if not isinstance(url, str) or not url:
        url = MEDIA_URN + c.get_id(media, "id", path)
    sha_text = c.get_str(media, "sha256", path, "")
    try:
        sha = base64.b64decode(sha_text, validate=True)
    except (binascii.Error, ValueError):
        raise TranslationError(f"{path}.sha256", "invalid base64") from None
    voice = media.get("voice") is True
    return ExternalPart(
        disposition=_disposition(kind, voice),
        content_type=c.get_str(media, "mime_type", path, _DEFAULT_TYPES[kind]),
        url=url,
        hash_alg=1 if sha else 0,
        content_hash=sha,
        description=c.get_str(media, "caption", path, "") if kind in _CAPTIONED else "",
        filename=c.get_str(media, "filename", path, "") if kind == "document" else "",
    )


def _geo(latitude: float, longitude: float, props: dict[str, str]) -> bytes:
    feature = {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [longitude, latitude]},
        "properties": props,
    }
    return msgspec.json.encode(feature)


def _location(part: SinglePart, field: str) -> dict[str, Any]:
    try:
        doc = c.as_obj(msgspec.json.decode(part.content), f"{field}.content")
        point = doc.get("geometry", doc)
        lon, lat = c.as_obj(point, f"{field}.content")["coordinates"]
        props = {k: v for k, v in (doc.get("properties") or {}).items() if k in _LOC_PROPS}
    except (msgspec.DecodeError, KeyError, TypeError, ValueError, AttributeError):
        raise TranslationError(f"{field}.content", "expected a GeoJSON Point") from None
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (lat, lon)):
        raise TranslationError(f"{field}.content", "coordinates must be numbers")
    if not all(isinstance(v, str) for v in props.values()):
        raise TranslationError(f"{field}.content", "name, address and url must be strings")
    location = {"latitude": lat, "longitude": lon, **props}
    implied = SinglePart(content_type=c.GEO_JSON, content=_geo(lat, lon, props))
    return c.with_side({"type": "location", "location": location}, {}, c.part_side(part, implied))


_LOC_PROPS = ("name", "address", "url")


def _leaf(part: NestedPart, field: str) -> list[dict[str, Any]]:
    if isinstance(part, ExternalPart):
        return [_media(part, field)]
    if isinstance(part, SinglePart):
        ctype = c.base_type(part.content_type)
        if c.is_text(part):
            body = c.part_text(part, field)
            c.check_text(LIMITS_WA, body, f"{field}.content", SERVICE)
            side = c.part_side(part, c.text_part(body))
            return [c.with_side({"type": "text", "text": {"body": body}}, {}, side)]
        if ctype == c.GEO_JSON:
            return [_location(part, field)]
        if ctype == c.VCARD:
            contacts = vcard_to_contacts(c.part_text(part, field))
            implied = SinglePart(
                content_type=c.VCARD, content=contacts_to_vcard(contacts).encode()
            )
            obj = {"type": "contacts", "contacts": contacts}
            return [c.with_side(obj, {}, c.part_side(part, implied))]
        raise TranslationError(f"{field}.contentType", f"whatsapp cannot carry inline {ctype}")
    raise TranslationError(field, "an empty part carries nothing to send")


def _unit(part: MultiPart, field: str) -> list[dict[str, Any]]:
    texts = [p for p in part.parts if c.is_text(p)]
    media = [p for p in part.parts if isinstance(p, ExternalPart)]
    if len(part.parts) == 2 and len(texts) == 1 and len(media) == 1 and not media[0].description:
        assert isinstance(texts[0], SinglePart)
        captioned = msgspec.structs.replace(media[0], description=c.part_text(texts[0], field))
        if _media_kind(captioned) in _CAPTIONED:
            return [_media(captioned, field)]
    raise TranslationError(field, "whatsapp can send a singleUnit only as captioned media")


def _merge_side(obj: dict[str, Any], side: dict[str, Any]) -> dict[str, Any]:
    if side:
        obj[c.SIDE] = side | obj.get(c.SIDE, {})
    return obj


def content_to_native(content: MimiContent, *, refs: MessageRefs | None = None) -> list[dict]:
    """Translate MIMI content to WhatsApp message objects (usually one; see module doc)."""
    intent = intent_of(content)
    if intent.action in ("react", "unreact"):
        assert intent.target is not None
        emoji = c.reaction_emoji(intent.part, "nestedPart") if intent.action == "react" else ""
        implied = c.reaction_part(emoji) if emoji else c.UNREACT
        obj = {
            "type": "reaction",
            "reaction": {
                "message_id": native_ref(refs, SERVICE, intent.target, "inReplyTo"),
                "emoji": emoji,
            },
        }
        side = c.message_side(content, carry_replaces=True)
        return [c.with_side(obj, side, c.part_side(intent.part, implied))]
    context = None
    if intent.reply_to is not None:
        context = {"message_id": native_ref(refs, SERVICE, intent.reply_to, "inReplyTo")}
    if intent.action == "delete":
        assert intent.target is not None
        original = native_ref(refs, SERVICE, intent.target, "replaces")
        obj = {"type": "revoke", "revoke": {"original_message_id": original}}
        if context:
            obj["context"] = context
        return [c.with_side(obj, c.message_side(content), c.part_side(intent.part, c.DELETED))]
    interactive = content.extensions.get(INTERACTIVE_EXT)
    if interactive is not None:
        rest = tuple(u for u in content.extensions.unknown if u.key != INTERACTIVE_EXT)
        extensions = msgspec.structs.replace(content.extensions, unknown=rest)
        content = msgspec.structs.replace(content, extensions=extensions)
    natives = c.flatten(intent.part, "nestedPart", _leaf, _unit)
    if interactive is not None and len(natives) == 1 and natives[0]["type"] == "text":
        natives = [{"type": "interactive", "interactive": interactive.value}]
    if context:
        natives[0]["context"] = context
    side = c.message_side(content)
    if intent.action == "edit":
        assert intent.target is not None
        if len(natives) != 1:
            raise TranslationError("nestedPart", "an edit must be a single whatsapp message")
        original = native_ref(refs, SERVICE, intent.target, "replaces")
        edit = {"original_message_id": original, "message": natives[0]}
        return [_merge_side({"type": "edit", "edit": edit}, side)]
    return [_merge_side(obj, side) for obj in natives]


def native_to_content(
    obj: Any, *, refs: MessageRefs | None = None, path: str = "message"
) -> MimiContent:
    """Translate a WhatsApp message object (send-API body or webhook message) to MIMI content."""
    obj = c.as_obj(obj, path)
    message_side, part_side = c.read_side(obj, path)
    kind = c.get_str(obj, "type", path)
    reply_to = None
    context = obj.get("context")
    if context is not None:
        ref = c.as_obj(context, f"{path}.context")
        key = "message_id" if "message_id" in ref else "id"
        if key in ref:  # a forwarded-only context names no message
            reply_to = mimi_ref(refs, SERVICE, c.get_id(ref, key, f"{path}.context"))
    if kind == "reaction":
        reaction = c.get_obj(obj, "reaction", path)
        target = mimi_ref(refs, SERVICE, c.get_str(reaction, "message_id", f"{path}.reaction"))
        emoji = c.get_str(reaction, "emoji", f"{path}.reaction", "")
        part = c.apply_part_side(c.reaction_part(emoji) if emoji else c.UNREACT, part_side, path)
        return c.build_content(part, message_side, path, in_reply_to=target)
    if kind in ("edit", "revoke"):
        body = c.get_obj(obj, kind, path)
        target = mimi_ref(refs, SERVICE, c.get_str(body, "original_message_id", f"{path}.{kind}"))
        if kind == "revoke":
            part = c.apply_part_side(c.DELETED, part_side, path)
            return c.build_content(part, message_side, path, in_reply_to=reply_to, replaces=target)
        inner = native_to_content(
            c.get_obj(body, "message", f"{path}.edit"), refs=refs, path=f"{path}.edit.message"
        )
        return c.build_content(
            inner.nested_part, message_side, path, in_reply_to=inner.in_reply_to, replaces=target
        )
    extra: UnknownExtension | None = None
    if kind == "text":
        text = c.get_str(c.get_obj(obj, "text", path), "body", f"{path}.text")
        implied: NestedPart = c.text_part(text)
    elif kind in MEDIA_KINDS:
        implied = _media_part(kind, c.get_obj(obj, kind, path), f"{path}.{kind}")
    elif kind == "location":
        loc = c.get_obj(obj, "location", path)
        lat, lon = loc.get("latitude"), loc.get("longitude")
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (lat, lon)):
            raise TranslationError(f"{path}.location", "latitude and longitude must be numbers")
        props = {k: c.get_str(loc, k, f"{path}.location") for k in _LOC_PROPS if k in loc}
        point = _geo(cast(float, lat), cast(float, lon), props)
        implied = SinglePart(content_type=c.GEO_JSON, content=point)
    elif kind == "contacts":
        contacts = c.get_list(obj, "contacts", path)
        try:
            card = contacts_to_vcard(contacts)
        except (AttributeError, TypeError):
            raise TranslationError(f"{path}.contacts", "malformed contacts") from None
        implied = SinglePart(content_type=c.VCARD, content=card.encode())
    elif kind == "interactive":
        interactive = c.get_obj(obj, "interactive", path)
        reply = c.get_obj(
            interactive,
            c.get_str(interactive, "type", f"{path}.interactive"),
            f"{path}.interactive",
        )
        implied = c.text_part(c.get_str(reply, "title", f"{path}.interactive"))
        extra = UnknownExtension.of(INTERACTIVE_EXT, interactive)
    else:
        raise TranslationError(f"{path}.type", f"unsupported whatsapp message type {kind!r}")
    part = c.apply_part_side(implied, part_side, path)
    content = c.build_content(part, message_side, path, in_reply_to=reply_to)
    if extra is not None:
        ext = content.extensions
        extensions = Extensions(
            sender_uri=ext.sender_uri, room_uri=ext.room_uri, unknown=(*ext.unknown, extra)
        )
        content = msgspec.structs.replace(content, extensions=extensions)
    return content
