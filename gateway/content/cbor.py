"""CBOR wire form of MIMI content, `application/mimi-content` (draft §2, §5).

Encoding is deterministic (RFC 8949 §4.2.1, required by draft §5.1): cbor2 already writes
shortest-form heads and definite lengths; the extensions map, the only map, is sorted here by the
bytes of its encoded keys. Unknown extensions are written back from their exact received bytes.
"""

from __future__ import annotations

import io
from typing import Any

import cbor2

from gateway.content.errors import ContentError
from gateway.content.model import (
    MESSAGE_ID_SIZE,
    SALT_SIZE,
    Cardinality,
    Expiration,
    Extensions,
    ExternalPart,
    MimiContent,
    MultiPart,
    NestedPart,
    NullPart,
    SinglePart,
    UnknownExtension,
)
from gateway.content.rawcbor import MAX_NESTING, describe_key, extension_value_spans

MAX_PART_DEPTH = 4  # draft §5.3: NestedParts MUST NOT be nested more than 4 levels deep
MAX_SAFE_INT = 2**53 - 1  # draft §5.2: integer keys must survive a double float
SENDER_URI, ROOM_URI = 1, 2
MEDIA_TYPE = "application/mimi-content"


class _Raw:
    """Bytes that are already CBOR, spliced unchanged into the output."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


def _write_raw(encoder: Any, value: Any) -> None:
    if not isinstance(value, _Raw):
        raise TypeError(f"cannot encode {type(value).__name__}")
    encoder.write(value.data)


def _part_list(part: NestedPart) -> list[Any]:
    if isinstance(part, SinglePart):
        return [part.disposition, part.language, 1, part.content_type, part.content]
    if isinstance(part, NullPart):
        return [part.disposition, part.language, 0]
    if isinstance(part, ExternalPart):
        return [
            part.disposition, part.language, 2, part.content_type, part.url, part.expires,
            part.size, part.enc_alg, part.key, part.nonce, part.aad, part.hash_alg,
            part.content_hash, part.description, part.filename,
        ]  # fmt: skip
    return [
        part.disposition, part.language, 3, part.part_semantics,
        [_part_list(p) for p in part.parts],
    ]  # fmt: skip


def _extensions_map(ext: Extensions) -> dict[Any, Any]:
    if not ext.unknown:
        out: dict[Any, Any] = {}
        if ext.sender_uri is not None:
            out[SENDER_URI] = ext.sender_uri
        if ext.room_uri is not None:
            out[ROOM_URI] = ext.room_uri
        return out
    items: list[tuple[bytes, Any, Any]] = []
    if ext.sender_uri is not None:
        items.append((b"\x01", SENDER_URI, ext.sender_uri))
    if ext.room_uri is not None:
        items.append((b"\x02", ROOM_URI, ext.room_uri))
    items.extend((cbor2.dumps(u.key), u.key, _Raw(u.cbor)) for u in ext.unknown)
    items.sort(key=lambda item: item[0])  # RFC 8949 §4.2.1: bytewise order of encoded keys
    return {key: value for _, key, value in items}


def encode_content(content: MimiContent) -> bytes:
    """Encode MIMI content to its deterministic CBOR bytes."""
    expires = content.expires
    doc = [
        content.salt,
        content.replaces,
        content.topic_id,
        None if expires is None else [expires.relative, expires.time],
        content.in_reply_to,
        _extensions_map(content.extensions),
        _part_list(content.nested_part),
    ]
    return cbor2.dumps(doc, default=_write_raw)


def decode_content(data: bytes) -> MimiContent:
    """Decode and validate CBOR MIMI content; any defect raises ContentError."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ContentError("mimiContent", "expected CBOR bytes")
    data = bytes(data)
    try:
        fp = io.BytesIO(data)
        doc = cbor2.CBORDecoder(fp, max_depth=MAX_NESTING).decode()
        trailing = fp.tell() != len(data)
    except Exception as exc:  # cbor2 raises several types; callers get one
        raise ContentError("mimiContent", f"invalid CBOR ({exc})") from None
    if trailing:
        raise ContentError("mimiContent", "trailing bytes after the CBOR item")
    if not isinstance(doc, list) or len(doc) != 7:
        raise ContentError("mimiContent", "expected an array of 7 items")
    salt, replaces, topic_id, expires, in_reply_to, extensions, nested = doc
    return MimiContent(
        salt=_bstr(salt, "salt", SALT_SIZE),
        replaces=_message_id(replaces, "replaces"),
        topic_id=_bstr(topic_id, "topicId"),
        expires=_expiration(expires),
        in_reply_to=_message_id(in_reply_to, "inReplyTo"),
        extensions=_extensions(extensions, data),
        nested_part=_part(nested, "nestedPart", 1),
    )


def _bstr(value: Any, field: str, size: int | None = None) -> bytes:
    if not isinstance(value, bytes):
        raise ContentError(field, "expected a byte string")
    if size is not None and len(value) != size:
        raise ContentError(field, f"expected {size} bytes, got {len(value)}")
    return value


def _tstr(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise ContentError(field, "expected a text string")
    return value


def _uint(value: Any, field: str, octets: int) -> int:
    if type(value) is not int or not 0 <= value < 1 << (8 * octets):
        raise ContentError(field, f"expected an unsigned integer of at most {octets} bytes")
    return value


def _message_id(value: Any, field: str) -> bytes | None:
    return None if value is None else _bstr(value, field, MESSAGE_ID_SIZE)


def _expiration(value: Any) -> Expiration | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != 2 or not isinstance(value[0], bool):
        raise ContentError("expires", "expected null or [relative: bool, time: uint]")
    return Expiration(relative=value[0], time=_uint(value[1], "expires.time", 4))


def _extensions(value: Any, data: bytes) -> Extensions:
    if not isinstance(value, dict):
        raise ContentError("extensions", "expected a map")
    sender = room = None
    unknown_keys: list[int | str] = []
    for key in value:
        if key == SENDER_URI and type(key) is int:
            sender = _tstr(value[key], "extensions.senderUri")
        elif key == ROOM_URI and type(key) is int:
            room = _tstr(value[key], "extensions.roomUri")
        elif (type(key) is int and -MAX_SAFE_INT <= key <= MAX_SAFE_INT) or (
            isinstance(key, str) and 1 <= len(key.encode()) <= 255
        ):
            unknown_keys.append(key)
        else:
            raise ContentError("extensions", f"invalid extension key {describe_key(key)}")
    # The scan also rejects repeated keys, which cbor2 would silently merge.
    spans = extension_value_spans(data)
    unknown: tuple[UnknownExtension, ...] = ()
    if unknown_keys:
        unknown = tuple(UnknownExtension(key=k, cbor=spans[k]) for k in unknown_keys)
    return Extensions(sender_uri=sender, room_uri=room, unknown=unknown)


_PART_LENGTHS = {0: 3, 1: 5, 2: 15, 3: 5}


def _part(value: Any, field: str, depth: int) -> NestedPart:
    if depth > MAX_PART_DEPTH:
        raise ContentError(field, f"parts nested more than {MAX_PART_DEPTH} levels deep")
    if not isinstance(value, list) or len(value) < 3:
        raise ContentError(field, "expected a NestedPart array")
    disposition = _uint(value[0], f"{field}.disposition", 1)
    language = _tstr(value[1], f"{field}.language")
    cardinality = value[2]
    if type(cardinality) is not int or cardinality not in _PART_LENGTHS:
        raise ContentError(f"{field}.cardinality", "expected 0, 1, 2 or 3")
    if len(value) != _PART_LENGTHS[cardinality]:
        name = Cardinality(cardinality).name.lower()
        raise ContentError(field, f"a {name} part has {_PART_LENGTHS[cardinality]} items")
    if cardinality == 0:
        return NullPart(disposition=disposition, language=language)
    if cardinality == 1:
        return SinglePart(
            disposition=disposition,
            language=language,
            content_type=_tstr(value[3], f"{field}.contentType"),
            content=_bstr(value[4], f"{field}.content"),
        )
    if cardinality == 2:
        return ExternalPart(
            disposition=disposition,
            language=language,
            content_type=_tstr(value[3], f"{field}.contentType"),
            url=_tstr(value[4], f"{field}.url"),
            expires=_uint(value[5], f"{field}.expires", 4),
            size=_uint(value[6], f"{field}.size", 8),
            enc_alg=_uint(value[7], f"{field}.encAlg", 2),
            key=_bstr(value[8], f"{field}.key"),
            nonce=_bstr(value[9], f"{field}.nonce"),
            aad=_bstr(value[10], f"{field}.aad"),
            hash_alg=_uint(value[11], f"{field}.hashAlg", 1),
            content_hash=_bstr(value[12], f"{field}.contentHash"),
            description=_tstr(value[13], f"{field}.description"),
            filename=_tstr(value[14], f"{field}.filename"),
        )
    semantics = value[3]
    if type(semantics) is not int or semantics not in (0, 1, 2):
        raise ContentError(f"{field}.partSemantics", "expected 0, 1 or 2")
    parts = value[4]
    if not isinstance(parts, list) or len(parts) < 2:
        raise ContentError(f"{field}.parts", "expected an array of at least 2 parts")
    return MultiPart(
        disposition=disposition,
        language=language,
        part_semantics=semantics,
        parts=tuple(_part(p, f"{field}.parts[{i}]", depth + 1) for i, p in enumerate(parts)),
    )
