"""What the SDK encrypts: MIMI content, translated for the recipient's service (DESIGN §2, §4.5).

To a platform user the plaintext is that service's native send object (built by
gateway.translate); to another third-party user it is the MIMI content's JSON mapping.
"""

from __future__ import annotations

from typing import Any

import msgspec

from gateway.content import (
    Disposition,
    ExternalPart,
    MimiContent,
    NullPart,
    SinglePart,
    content_from_json,
    content_to_json,
)
from gateway.crypto import MediaKey
from gateway.translate import TRANSLATORS, MessageRefs, whatsapp
from gateway.translate.limits import LIMITS
from gateway.uris import parse_user_uri

TEXT_PLAIN = "text/plain;charset=utf-8"
# IANA "AEAD Algorithms" registry: AEAD_AES_256_GCM; "Named Information Hash": sha-256.
AEAD_AES_256_GCM = 2
SHA_256 = 1


def service_of(uri: str) -> str | None:
    """The platform service of a user URI, or None for a third-party user."""
    parsed = parse_user_uri(uri)
    return parsed.authority if parsed is not None and parsed.is_platform else None


def native_message_id(service: str, gateway_id: str) -> str:
    """The id a message has on the recipient's service (as its webhooks name it)."""
    return whatsapp.wamid(gateway_id) if service == "whatsapp" else gateway_id


def text(body: str, *, reply_to: bytes | None = None) -> MimiContent:
    """A text message, optionally replying to a MIMI message id."""
    part = SinglePart(content_type=TEXT_PLAIN, content=body.encode())
    return MimiContent(nested_part=part, in_reply_to=reply_to)


def reaction(target: bytes, emoji: str) -> MimiContent:
    """A reaction to a message (an empty emoji takes it back; draft §4.3, §4.7)."""
    part: SinglePart | NullPart
    if emoji:
        part = SinglePart(
            disposition=Disposition.REACTION, content_type=TEXT_PLAIN, content=emoji.encode()
        )
    else:
        part = NullPart(disposition=Disposition.REACTION)
    return MimiContent(nested_part=part, in_reply_to=target)


def edit(target: bytes, body: str) -> MimiContent:
    """A new text for a message sent before."""
    return MimiContent(
        nested_part=SinglePart(content_type=TEXT_PLAIN, content=body.encode()), replaces=target
    )


def delete(target: bytes) -> MimiContent:
    """Withdraw a message sent before."""
    return MimiContent(nested_part=NullPart(), replaces=target)


def media(
    url: str,
    key: MediaKey,
    *,
    content_type: str,
    size: int,
    filename: str = "",
    caption: str = "",
    reply_to: bytes | None = None,
) -> MimiContent:
    """An encrypted file: where it is and how to open it (a MIMI ExternalPart, draft §2.5)."""
    part = ExternalPart(
        disposition=Disposition.RENDER
        if content_type.startswith("image/")
        else Disposition.ATTACHMENT,
        content_type=content_type,
        url=url,
        size=size,
        enc_alg=AEAD_AES_256_GCM,
        key=key.key,
        nonce=key.nonce,
        hash_alg=SHA_256,
        content_hash=key.sha256,
        description=caption,
        filename=filename,
    )
    return MimiContent(nested_part=part, in_reply_to=reply_to)


def media_key_of(part: ExternalPart, ciphertext_size: int) -> MediaKey:
    """The key material a received ExternalPart carries."""
    return MediaKey(key=part.key, nonce=part.nonce, sha256=part.content_hash, size=ciphertext_size)


def upload_kind(service: str, content_type: str) -> str | None:
    """The peer service's media kind for an upload's size limit (None: its largest)."""
    kinds = LIMITS[service].media
    major = content_type.split("/", 1)[0]
    if service == "whatsapp" and content_type == "image/webp":
        return "sticker"
    if major in kinds:
        return major
    return "document" if "document" in kinds else "file" if "file" in kinds else None


def to_plaintexts(peer: str, content: MimiContent, refs: MessageRefs) -> list[bytes]:
    """The plaintext(s) to encrypt for `peer`: native send objects, or MIMI JSON."""
    service = service_of(peer)
    if service is None:
        return [msgspec.json.encode(content_to_json(content))]
    return native_plaintexts(service, content, refs)


def native_plaintexts(service: str, content: MimiContent, refs: MessageRefs) -> list[bytes]:
    """`service`'s native send object(s) for `content`, encoded: what a group hosted there
    carries inside Megolm, whoever its members are (DESIGN §4.10)."""
    natives = TRANSLATORS[service].content_to_native(content, refs=refs)
    return [msgspec.json.encode(obj) for obj in natives]


def from_native_plaintext(
    service: str, plaintext: bytes, refs: MessageRefs
) -> tuple[MimiContent, dict[str, Any]]:
    """Read a decrypted group message of a group hosted on `service` (its native object)."""
    obj = msgspec.json.decode(plaintext)
    return TRANSLATORS[service].native_to_content(obj, refs=refs), obj


def from_plaintext(
    sender: str, plaintext: bytes, refs: MessageRefs
) -> tuple[MimiContent, dict[str, Any] | None]:
    """Read a decrypted message: MIMI content, plus the native object it came as (if any)."""
    service = service_of(sender)
    if service is None:
        return content_from_json(msgspec.json.decode(plaintext)), None
    return from_native_plaintext(service, plaintext, refs)
