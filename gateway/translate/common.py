"""Pieces every translator shares: checked access to native JSON, MIMI part helpers, limits.

What a native format has no slot for travels in a `mimi` object on the native message object
(ignored by native parsers, read back by ours), so translation never loses content silently:
it holds the JSON mapping (DESIGN §4.9) of exactly those MIMI fields that differ from what the
native form implies. Salt is not carried: the receiving side generates a fresh one (draft §2.1).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterator
from typing import Any

import msgspec

from gateway.content import (
    ContentError,
    Disposition,
    Extensions,
    MimiContent,
    MultiPart,
    NestedPart,
    NullPart,
    PartSemantics,
    SinglePart,
    b64u_decode,
    b64u_encode,
    content_from_json,
    content_to_json,
    part_from_json,
    part_to_json,
)
from gateway.translate.errors import TranslationError
from gateway.translate.limits import MediaLimit, ServiceLimits

TEXT_PLAIN = "text/plain;charset=utf-8"
GEO_JSON = "application/geo+json"  # RFC 7946, for shared locations
VCARD = "text/vcard"  # RFC 6350, for shared contacts
SIDE = "mimi"
_TEXT_TYPES = ("text/plain", "text/markdown")

# -- checked access to native JSON ----------------------------------------------------------


def as_obj(value: Any, path: str) -> dict[str, Any]:
    """Return `value` if it is a JSON object."""
    if not isinstance(value, dict):
        raise TranslationError(path, "expected an object")
    return value


def webhook_items(doc: dict[str, Any], key: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each object of a Meta webhook's `entry[].<key>[]` (`changes`, `messaging`) and its path."""
    for i, entry in enumerate(get_list(doc, "entry", "")):
        epath = f"entry[{i}]"
        for j, item in enumerate(get_list(as_obj(entry, epath), key, epath)):
            path = f"{epath}.{key}[{j}]"
            yield path, as_obj(item, path)


def get_obj(obj: dict[str, Any], key: str, path: str) -> dict[str, Any]:
    """Return the required object member `key`."""
    return as_obj(obj.get(key), f"{path}.{key}" if path else key)


def get_list(obj: dict[str, Any], key: str, path: str) -> list[Any]:
    """Return the required array member `key`."""
    value = obj.get(key)
    if not isinstance(value, list):
        raise TranslationError(f"{path}.{key}" if path else key, "expected an array")
    return value


def get_str(obj: dict[str, Any], key: str, path: str, default: str | None = None) -> str:
    """Return the string member `key` (required unless a default is given)."""
    value = obj.get(key, default)
    if not isinstance(value, str):
        raise TranslationError(f"{path}.{key}" if path else key, "expected a string")
    return value


def get_id(obj: dict[str, Any], key: str, path: str) -> str:
    """Return an id member; some senders write ids as numbers, Meta writes strings."""
    value = obj.get(key)
    if isinstance(value, str) and value:
        return value
    if type(value) is int:
        return str(value)
    raise TranslationError(f"{path}.{key}" if path else key, "expected an id string")


def timestamp_ms(value: Any, path: str, *, unit_ms: int) -> int:
    """Read a native timestamp (number or numeric string in `unit_ms`, or ISO 8601) as ms."""
    if type(value) is int and value >= 0:
        return value * unit_ms
    if isinstance(value, str):
        if value.isdigit():
            return int(value) * unit_ms
        try:
            parsed = datetime.datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if parsed.tzinfo is not None:
                return int(parsed.timestamp() * 1000)
    raise TranslationError(path, "expected a timestamp")


def load_json(payload: bytes | str | dict[str, Any], path: str = "") -> dict[str, Any]:
    """Accept a payload as parsed JSON or as bytes/str of JSON."""
    if isinstance(payload, dict):
        return payload
    try:
        return as_obj(msgspec.json.decode(payload), path or "$")
    except (msgspec.DecodeError, TypeError):
        raise TranslationError(path or "$", "invalid JSON") from None


# -- MIMI parts -----------------------------------------------------------------------------


def base_type(content_type: str) -> str:
    """The lower-case `type/subtype` of a media type, without parameters."""
    return content_type.split(";", 1)[0].strip().lower()


def is_text(part: NestedPart) -> bool:
    """Whether a part is plain or markdown text that natives show as a text message."""
    return isinstance(part, SinglePart) and base_type(part.content_type) in _TEXT_TYPES


def part_text(part: SinglePart, field: str) -> str:
    """Decode a text part; only UTF-8 (the draft's required charset, §6.1) is accepted."""
    for param in part.content_type.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() != "utf-8":
            raise TranslationError(f"{field}.contentType", "only charset=utf-8 is supported")
    try:
        return part.content.decode()
    except UnicodeDecodeError:
        raise TranslationError(f"{field}.content", "not valid UTF-8") from None


def text_part(text: str) -> SinglePart:
    """A plain-text render part."""
    return SinglePart(content_type=TEXT_PLAIN, content=text.encode())


def assemble(parts: list[NestedPart]) -> NestedPart:
    """One part as is; several native parts of one message become a processAll MultiPart."""
    if len(parts) == 1:
        return parts[0]
    return MultiPart(part_semantics=PartSemantics.PROCESS_ALL, parts=tuple(parts))


def flatten(
    part: NestedPart,
    field: str,
    leaf: Callable[[NestedPart, str], list[dict[str, Any]]],
    unit: Callable[[MultiPart, str], list[dict[str, Any]]] | None = None,
) -> list[dict[str, Any]]:
    """Turn a body into native messages (draft §2.4 part semantics).

    chooseOne takes the first alternative the service can express (the receiver's choice is
    ours to make); processAll becomes one native message per part (documented degradation);
    singleUnit must become one native message, so only the service's `unit` hook can take it.
    """
    if not isinstance(part, MultiPart):
        return leaf(part, field)
    if part.part_semantics == PartSemantics.CHOOSE_ONE:
        first: TranslationError | None = None
        for i, alternative in enumerate(part.parts):
            try:
                return flatten(alternative, f"{field}.parts[{i}]", leaf, unit)
            except TranslationError as exc:
                first = first or exc
        assert first is not None
        raise first
    if part.part_semantics == PartSemantics.PROCESS_ALL:
        out: list[dict[str, Any]] = []
        for i, child in enumerate(part.parts):
            out.extend(flatten(child, f"{field}.parts[{i}]", leaf, unit))
        return out
    if unit is None:
        raise TranslationError(field, "a singleUnit multipart cannot be expressed natively")
    return unit(part, field)


# -- the `mimi` side object -----------------------------------------------------------------


def diff(full: dict[str, Any], implied: dict[str, Any]) -> dict[str, Any]:
    """The members of `full` whose value the native form does not already imply."""
    return {k: v for k, v in full.items() if implied.get(k, _MISSING) != v}


_MISSING = object()
_NO_EXTENSIONS = Extensions()
_MESSAGE_IMPLIED: dict[str, Any] = {"topicId": "", "expires": None, "extensions": {}}


def message_side(content: MimiContent, *, carry_replaces: bool = False) -> dict[str, Any]:
    """Message-level fields natives lack: topicId, expires, extensions (and replaces)."""
    if (
        not content.topic_id
        and content.expires is None
        and content.extensions == _NO_EXTENSIONS
        and (content.replaces is None or not carry_replaces)
    ):
        return {}  # the common case, kept cheap: it is on every message's path
    full = content_to_json(content)
    keys = ("topicId", "expires", "extensions", "replaces") if carry_replaces else _MESSAGE_IMPLIED
    return diff({k: full[k] for k in keys}, _MESSAGE_IMPLIED | {"replaces": None})


def part_side(part: NestedPart, implied: NestedPart) -> dict[str, Any]:
    """Part fields natives lack, relative to the part the native form implies."""
    if part == implied:
        return {}
    return diff(part_to_json(part), part_to_json(implied))


def with_side(
    obj: dict[str, Any], message: dict[str, Any], part: dict[str, Any]
) -> dict[str, Any]:
    """Attach a non-empty side object to a native message object."""
    side = dict(message)
    if part:
        side["part"] = part
    if side:
        obj[SIDE] = side
    return obj


def read_side(obj: dict[str, Any], path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return (message-level, part-level) side fields of a native message object."""
    side = obj.get(SIDE)
    if side is None:
        return {}, {}
    side = as_obj(side, f"{path}.{SIDE}")
    part = side.get("part", {})
    return {k: v for k, v in side.items() if k != "part"}, as_obj(part, f"{path}.{SIDE}.part")


def apply_part_side(implied: NestedPart, side: dict[str, Any], path: str) -> NestedPart:
    """Rebuild a part from what the native form implies plus the side fields."""
    if not side:
        return implied
    try:
        return part_from_json(part_to_json(implied) | side, f"{path}.{SIDE}.part")
    except ContentError as exc:
        raise TranslationError(exc.field, exc.reason) from None


def build_content(
    part: NestedPart,
    side: dict[str, Any],
    path: str,
    *,
    in_reply_to: bytes | None = None,
    replaces: bytes | None = None,
) -> MimiContent:
    """Assemble MIMI content from a native message's part, references and side fields."""
    if not side:
        return MimiContent(in_reply_to=in_reply_to, replaces=replaces, nested_part=part)
    doc = {
        "inReplyTo": None if in_reply_to is None else b64u_encode(in_reply_to),
        "replaces": None if replaces is None else b64u_encode(replaces),
        "nestedPart": {"cardinality": "nullpart"},
    }
    try:
        content = content_from_json(doc | side)
    except ContentError as exc:
        raise TranslationError(f"{path}.{SIDE}.{exc.field}", exc.reason) from None
    return msgspec.structs.replace(content, nested_part=part)


def side_bytes(value: Any, field: str) -> bytes:
    """Decode a base64url member of a side object."""
    try:
        return b64u_decode(value, field)
    except ContentError as exc:
        raise TranslationError(exc.field, exc.reason) from None


# -- limits (DESIGN §5): reject, never truncate -----------------------------------------------


def check_text(limits: ServiceLimits, text: str, field: str, service: str) -> None:
    """Reject text over the service's limit, in the unit the service counts."""
    size = len(text.encode()) if limits.text_unit == "utf8_bytes" else len(text)
    if size > limits.text_max:
        unit = "UTF-8 bytes" if limits.text_unit == "utf8_bytes" else "characters"
        raise TranslationError(field, f"{service} accepts at most {limits.text_max} {unit}")
    if not text:
        raise TranslationError(field, "empty text")


def check_caption(limits: ServiceLimits, text: str, field: str, service: str) -> None:
    """Reject a caption over the service's caption limit."""
    if limits.caption_max is not None and len(text) > limits.caption_max:
        raise TranslationError(
            field, f"{service} accepts captions of at most {limits.caption_max} characters"
        )


def accepts(limit: MediaLimit, content_type: str) -> bool:
    """Whether a media kind accepts this media type."""
    return "*/*" in limit.mime_types or base_type(content_type) in limit.mime_types


def check_size(limit: MediaLimit, size: int, field: str, what: str, max_bytes: int = 0) -> None:
    """Reject media over the size limit; size 0 means the sender did not state it (draft §2.5)."""
    top = max_bytes or limit.max_bytes
    if size > top:
        raise TranslationError(field, f"{what} is limited to {top} bytes")


def reaction_emoji(part: NestedPart, field: str) -> str:
    """The emoji of a reaction part (disposition reaction, text)."""
    if not isinstance(part, SinglePart) or not is_text(part):
        raise TranslationError(field, "a reaction must be a single text part (an emoji)")
    emoji = part_text(part, field)
    if not emoji:
        raise TranslationError(f"{field}.content", "empty reaction")
    return emoji


def reaction_part(emoji: str) -> SinglePart:
    """A reaction part carrying one emoji (draft §4.3)."""
    return SinglePart(
        disposition=Disposition.REACTION, content_type=TEXT_PLAIN, content=emoji.encode()
    )


UNREACT = NullPart(disposition=Disposition.REACTION)
DELETED = NullPart()
