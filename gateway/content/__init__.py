"""MIMI content (draft-ietf-mimi-content): typed model, CBOR and JSON codecs, message IDs."""

from __future__ import annotations

from gateway.content.cbor import MEDIA_TYPE, decode_content, encode_content
from gateway.content.errors import ContentError
from gateway.content.jsonmap import (
    b64u_decode,
    b64u_encode,
    content_cbor_b64,
    content_from_json,
    content_from_message,
    content_to_json,
    part_from_json,
    part_to_json,
)
from gateway.content.model import (
    Cardinality,
    Disposition,
    Expiration,
    Extensions,
    ExternalPart,
    MimiContent,
    MultiPart,
    NestedPart,
    NullPart,
    PartSemantics,
    SinglePart,
    UnknownExtension,
    new_salt,
    walk_parts,
)
from gateway.content.msgid import message_id, message_id_from_cbor

__all__ = [
    "MEDIA_TYPE",
    "Cardinality",
    "ContentError",
    "Disposition",
    "Expiration",
    "Extensions",
    "ExternalPart",
    "MimiContent",
    "MultiPart",
    "NestedPart",
    "NullPart",
    "PartSemantics",
    "SinglePart",
    "UnknownExtension",
    "b64u_decode",
    "b64u_encode",
    "content_cbor_b64",
    "content_from_json",
    "content_from_message",
    "content_to_json",
    "decode_content",
    "encode_content",
    "message_id",
    "message_id_from_cbor",
    "new_salt",
    "part_from_json",
    "part_to_json",
    "walk_parts",
]
