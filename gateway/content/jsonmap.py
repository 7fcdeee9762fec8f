"""The JSON mapping of MIMI content (DESIGN §4.9): CDDL field names, base64url byte strings.

Unknown extensions appear under their key (an integer key as its decimal string; a text key that
could be mistaken for one, or for senderUri/roomUri, is prefixed with "~") and their value is the
unpadded base64url of the value's exact CBOR bytes, so JSON and CBOR carry the same information.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from gateway.content.cbor import decode_content, encode_content
from gateway.content.errors import ContentError
from gateway.content.model import (
    CARDINALITY_NAMES,
    DISPOSITION_NAMES,
    MESSAGE_ID_SIZE,
    SALT_SIZE,
    SEMANTICS_NAMES,
    Expiration,
    Extensions,
    ExternalPart,
    MimiContent,
    MultiPart,
    NestedPart,
    NullPart,
    SinglePart,
    UnknownExtension,
    new_salt,
)
from gateway.content.rawcbor import skip_item

_DISPOSITIONS = {name: value for value, name in DISPOSITION_NAMES.items()}
_CARDINALITIES = {name: value for value, name in CARDINALITY_NAMES.items()}
_SEMANTICS = {name: value for value, name in SEMANTICS_NAMES.items()}
_INT_KEY = re.compile(r"-?[0-9]+")
_RESERVED_TEXT_KEYS = frozenset({"senderUri", "roomUri"})


def b64u_encode(data: bytes) -> str:
    """Unpadded base64url (RFC 4648 §5)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64u_decode(text: Any, field: str) -> bytes:
    """Decode unpadded (or padded) base64url, naming `field` on error."""
    if not isinstance(text, str):
        raise ContentError(field, "expected a base64url string")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise ContentError(field, "invalid base64url") from None


# -- to JSON ------------------------------------------------------------------------------------


def _ext_key_to_json(key: int | str) -> str:
    if isinstance(key, int):
        return str(key)
    if _INT_KEY.fullmatch(key) or key in _RESERVED_TEXT_KEYS or key.startswith("~"):
        return "~" + key
    return key


def part_to_json(part: NestedPart) -> dict[str, Any]:
    """Map one NestedPart to its JSON object."""
    out: dict[str, Any] = {
        "disposition": DISPOSITION_NAMES.get(part.disposition, part.disposition),
        "language": part.language,
    }
    if isinstance(part, SinglePart):
        out["cardinality"] = "single"
        out["contentType"] = part.content_type
        out["content"] = b64u_encode(part.content)
    elif isinstance(part, NullPart):
        out["cardinality"] = "nullpart"
    elif isinstance(part, ExternalPart):
        out.update(
            cardinality="external",
            contentType=part.content_type,
            url=part.url,
            expires=part.expires,
            size=part.size,
            encAlg=part.enc_alg,
            key=b64u_encode(part.key),
            nonce=b64u_encode(part.nonce),
            aad=b64u_encode(part.aad),
            hashAlg=part.hash_alg,
            contentHash=b64u_encode(part.content_hash),
            description=part.description,
            filename=part.filename,
        )
    else:
        out["cardinality"] = "multi"
        out["partSemantics"] = SEMANTICS_NAMES[part.part_semantics]
        out["parts"] = [part_to_json(p) for p in part.parts]
    return out


def content_to_json(content: MimiContent) -> dict[str, Any]:
    """Map MIMI content to its JSON object (DESIGN §4.9)."""
    ext: dict[str, Any] = {}
    if content.extensions.sender_uri is not None:
        ext["senderUri"] = content.extensions.sender_uri
    if content.extensions.room_uri is not None:
        ext["roomUri"] = content.extensions.room_uri
    for unknown in content.extensions.unknown:
        ext[_ext_key_to_json(unknown.key)] = b64u_encode(unknown.cbor)
    expires = content.expires
    expires_json = (
        None if expires is None else {"relative": expires.relative, "time": expires.time}
    )
    return {
        "salt": b64u_encode(content.salt),
        "replaces": None if content.replaces is None else b64u_encode(content.replaces),
        "topicId": b64u_encode(content.topic_id),
        "expires": expires_json,
        "inReplyTo": None if content.in_reply_to is None else b64u_encode(content.in_reply_to),
        "extensions": ext,
        "nestedPart": part_to_json(content.nested_part),
    }


# -- from JSON ----------------------------------------------------------------------------------


def _str(obj: dict[str, Any], key: str, field: str, default: str | None = None) -> str:
    value = obj.get(key, default)
    if not isinstance(value, str):
        raise ContentError(f"{field}.{key}" if field else key, "expected a string")
    return value


def _uint(obj: dict[str, Any], key: str, field: str, octets: int) -> int:
    value = obj.get(key, 0)
    if type(value) is not int or not 0 <= value < 1 << (8 * octets):
        raise ContentError(f"{field}.{key}", f"expected an unsigned integer of {octets} bytes")
    return value


def _named(value: Any, names: dict[str, int], field: str, allow_int: range | None) -> int:
    if isinstance(value, str) and value in names:
        return names[value]
    if allow_int is not None and type(value) is int and value in allow_int:
        return value
    raise ContentError(field, f"expected one of {', '.join(names)}")


def _message_id(value: Any, field: str) -> bytes | None:
    if value is None:
        return None
    raw = b64u_decode(value, field)
    if len(raw) != MESSAGE_ID_SIZE:
        raise ContentError(field, f"expected {MESSAGE_ID_SIZE} bytes")
    return raw


def part_from_json(obj: Any, field: str = "nestedPart", depth: int = 1) -> NestedPart:
    """Build a NestedPart from its JSON object."""
    if depth > 4:  # draft §5.3
        raise ContentError(field, "parts nested more than 4 levels deep")
    if not isinstance(obj, dict):
        raise ContentError(field, "expected an object")
    disposition = _named(
        obj.get("disposition", "render"), _DISPOSITIONS, f"{field}.disposition", range(256)
    )
    language = _str(obj, "language", field, "")
    cardinality = _named(obj.get("cardinality"), _CARDINALITIES, f"{field}.cardinality", None)
    if cardinality == 0:
        return NullPart(disposition=disposition, language=language)
    if cardinality == 1:
        return SinglePart(
            disposition=disposition,
            language=language,
            content_type=_str(obj, "contentType", field),
            content=b64u_decode(obj.get("content"), f"{field}.content"),
        )
    if cardinality == 2:
        return ExternalPart(
            disposition=disposition,
            language=language,
            content_type=_str(obj, "contentType", field),
            url=_str(obj, "url", field),
            expires=_uint(obj, "expires", field, 4),
            size=_uint(obj, "size", field, 8),
            enc_alg=_uint(obj, "encAlg", field, 2),
            key=b64u_decode(obj.get("key", ""), f"{field}.key"),
            nonce=b64u_decode(obj.get("nonce", ""), f"{field}.nonce"),
            aad=b64u_decode(obj.get("aad", ""), f"{field}.aad"),
            hash_alg=_uint(obj, "hashAlg", field, 1),
            content_hash=b64u_decode(obj.get("contentHash", ""), f"{field}.contentHash"),
            description=_str(obj, "description", field, ""),
            filename=_str(obj, "filename", field, ""),
        )
    semantics = _named(obj.get("partSemantics"), _SEMANTICS, f"{field}.partSemantics", None)
    parts = obj.get("parts")
    if not isinstance(parts, list) or len(parts) < 2:
        raise ContentError(f"{field}.parts", "expected an array of at least 2 parts")
    return MultiPart(
        disposition=disposition,
        language=language,
        part_semantics=semantics,
        parts=tuple(
            part_from_json(p, f"{field}.parts[{i}]", depth + 1) for i, p in enumerate(parts)
        ),
    )


def _extensions_from_json(obj: Any) -> Extensions:
    if obj is None:
        return Extensions()
    if not isinstance(obj, dict):
        raise ContentError("extensions", "expected an object")
    sender = obj.get("senderUri")
    room = obj.get("roomUri")
    if sender is not None and not isinstance(sender, str):
        raise ContentError("extensions.senderUri", "expected a string")
    if room is not None and not isinstance(room, str):
        raise ContentError("extensions.roomUri", "expected a string")
    unknown = []
    for name, value in obj.items():
        if name in _RESERVED_TEXT_KEYS:
            continue
        field = f"extensions.{name}"
        key: int | str
        if name.startswith("~"):
            key = name[1:]
        elif _INT_KEY.fullmatch(name):
            # Past 17 characters it is out of range; int() of thousands of digits would raise.
            key = int(name) if len(name) <= 17 else 2**53
            if key in (1, 2) or abs(key) > 2**53 - 1:
                raise ContentError(field, "integer key reserved or out of range")
        else:
            key = name
        if isinstance(key, str) and not 1 <= len(key.encode()) <= 255:
            raise ContentError(field, "text keys have 1 to 255 bytes")
        raw = b64u_decode(value, field)
        try:
            if not raw or skip_item(raw, 0) != len(raw):
                raise ContentError(field, "expected exactly one CBOR item")
        except IndexError:
            raise ContentError(field, "truncated CBOR item") from None
        unknown.append(UnknownExtension(key=key, cbor=raw))
    return Extensions(sender_uri=sender, room_uri=room, unknown=tuple(unknown))


def content_from_json(obj: Any) -> MimiContent:
    """Build MIMI content from its JSON object; `salt` is generated when absent."""
    if not isinstance(obj, dict):
        raise ContentError("content", "expected an object")
    salt_text = obj.get("salt")
    salt = new_salt() if salt_text is None else b64u_decode(salt_text, "salt")
    if len(salt) != SALT_SIZE:
        raise ContentError("salt", f"expected {SALT_SIZE} bytes")
    expires_obj = obj.get("expires")
    expires = None
    if expires_obj is not None:
        if not isinstance(expires_obj, dict) or not isinstance(expires_obj.get("relative"), bool):
            raise ContentError("expires", "expected null or {relative: bool, time: uint}")
        time = expires_obj.get("time")
        if type(time) is not int or not 0 <= time < 1 << 32:
            raise ContentError("expires.time", "expected an unsigned 32-bit integer")
        expires = Expiration(relative=expires_obj["relative"], time=time)
    if "nestedPart" not in obj:
        raise ContentError("nestedPart", "required")
    return MimiContent(
        salt=salt,
        replaces=_message_id(obj.get("replaces"), "replaces"),
        topic_id=b64u_decode(obj.get("topicId", ""), "topicId"),
        expires=expires,
        in_reply_to=_message_id(obj.get("inReplyTo"), "inReplyTo"),
        extensions=_extensions_from_json(obj.get("extensions")),
        nested_part=part_from_json(obj["nestedPart"]),
    )


def content_from_message(message: dict[str, Any]) -> MimiContent:
    """Read a message's `content` (JSON mapping) or `content_cbor` (base64url CBOR)."""
    if "content_cbor" in message:
        if "content" in message:
            raise ContentError("content_cbor", "give either content or content_cbor")
        return decode_content(b64u_decode(message["content_cbor"], "content_cbor"))
    if "content" not in message:
        raise ContentError("content", "required")
    return content_from_json(message["content"])


def content_cbor_b64(content: MimiContent) -> str:
    """The `content_cbor` form: unpadded base64url of the CBOR encoding."""
    return b64u_encode(encode_content(content))
