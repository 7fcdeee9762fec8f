"""Message IDs (draft-ietf-mimi-content §1.3 "Message ID")."""

from __future__ import annotations

import hashlib

from gateway.content.cbor import encode_content
from gateway.content.errors import ContentError
from gateway.content.model import MimiContent

SHA256_ID = 0x01  # IANA Named Information Hash Algorithm Registry: sha-256


def _uri_field(uri: str, name: str) -> bytes:
    raw = uri.encode()
    if len(raw) > 0xFFFF:
        raise ContentError(name, "longer than 65535 bytes")
    return len(raw).to_bytes(2, "big") + raw


def message_id_from_cbor(
    content_cbor: bytes, salt: bytes, sender_uri: str, room_uri: str = ""
) -> bytes:
    """Compute the 32-byte message ID of already-encoded content."""
    # hash(senderUriLength || senderUri || roomUriLength || roomUri || message || salt); the
    # salt is repeated to defeat SHA-256 length extension (draft §1.3).
    digest = hashlib.sha256(
        _uri_field(sender_uri, "senderUri") + _uri_field(room_uri, "roomUri") + content_cbor + salt
    ).digest()
    return bytes((SHA256_ID,)) + digest[:31]


def message_id(
    content: MimiContent, sender_uri: str | None = None, room_uri: str | None = None
) -> bytes:
    """Compute the message ID; URIs default to the senderUri/roomUri extensions ("" if absent).

    A 1:1 conversation through the gateway has no room, so its room URI is empty.
    """
    sender = sender_uri if sender_uri is not None else content.extensions.sender_uri
    if sender is None:
        raise ContentError("extensions.senderUri", "needed to compute the message ID")
    room = room_uri if room_uri is not None else (content.extensions.room_uri or "")
    return message_id_from_cbor(encode_content(content), content.salt, sender, room)
