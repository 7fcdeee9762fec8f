"""MIMI content as typed values (draft-ietf-mimi-content §2, CDDL in Appendix B).

Python attribute names are the CDDL names in snake_case; the CBOR and JSON codecs map them back.
"""

from __future__ import annotations

import enum
import os
from typing import Any

import cbor2
import msgspec

SALT_SIZE = 16  # mimiContent.salt: bstr .size 16
MESSAGE_ID_SIZE = 32  # MessageId: bstr .size 32


class _SaltPool:
    """OS randomness drawn in blocks: one system call per 256 salts instead of per message.

    The bytes are the OS CSPRNG's as they come. `list.pop` is atomic, so threads never share a
    salt; the pool is dropped in a forked child so that two processes never do either.
    """

    COUNT = 256

    def __init__(self) -> None:
        self.salts: list[bytes] = []

    def reset(self) -> None:
        self.salts = []

    def take(self) -> bytes:
        try:
            return self.salts.pop()
        except IndexError:
            block = os.urandom(SALT_SIZE * self.COUNT)
            self.salts = [block[i : i + SALT_SIZE] for i in range(0, len(block), SALT_SIZE)]
            return self.salts.pop()


_SALTS = _SaltPool()
os.register_at_fork(after_in_child=_SALTS.reset)


def new_salt() -> bytes:
    """Return a fresh cryptographically random salt (draft §2.1: MUST be random)."""
    return _SALTS.take()


class Disposition(enum.IntEnum):
    """baseDispos of the CDDL; values 9..255 are `unknown` and kept as plain ints."""

    UNSPECIFIED = 0
    RENDER = 1
    REACTION = 2
    PROFILE = 3
    INLINE = 4
    ICON = 5
    ATTACHMENT = 6
    SESSION = 7
    PREVIEW = 8


class Cardinality(enum.IntEnum):
    """The cardinality discriminator of a NestedPart."""

    NULLPART = 0
    SINGLE = 1
    EXTERNAL = 2
    MULTI = 3


class PartSemantics(enum.IntEnum):
    """How the parts of a MultiPart relate (draft §2.4)."""

    CHOOSE_ONE = 0
    SINGLE_UNIT = 1
    PROCESS_ALL = 2


# CDDL spellings used by the JSON mapping (DESIGN §4.9).
DISPOSITION_NAMES: dict[int, str] = {d.value: d.name.lower() for d in Disposition}
CARDINALITY_NAMES: dict[int, str] = {c.value: c.name.lower() for c in Cardinality}
SEMANTICS_NAMES: dict[int, str] = {0: "chooseOne", 1: "singleUnit", 2: "processAll"}


class Expiration(msgspec.Struct, frozen=True, kw_only=True):
    """When the receiver should drop the message: relative seconds or absolute Unix time."""

    relative: bool
    time: int


class NullPart(msgspec.Struct, frozen=True, kw_only=True):
    """A body without content, used to delete or unlike (draft §2.4)."""

    disposition: int = Disposition.RENDER
    language: str = ""


class SinglePart(msgspec.Struct, frozen=True, kw_only=True):
    """One inline body part."""

    disposition: int = Disposition.RENDER
    language: str = ""
    content_type: str
    content: bytes


class ExternalPart(msgspec.Struct, frozen=True, kw_only=True):
    """A body part stored elsewhere, with what is needed to fetch and decrypt it (draft §2.5)."""

    disposition: int = Disposition.RENDER
    language: str = ""
    content_type: str
    url: str
    expires: int = 0
    size: int = 0
    enc_alg: int = 0
    key: bytes = b""
    nonce: bytes = b""
    aad: bytes = b""
    hash_alg: int = 0
    content_hash: bytes = b""
    description: str = ""
    filename: str = ""


class MultiPart(msgspec.Struct, frozen=True, kw_only=True):
    """Two or more nested parts and how they relate."""

    disposition: int = Disposition.RENDER
    language: str = ""
    part_semantics: int
    parts: tuple[NestedPart, ...]


NestedPart = NullPart | SinglePart | ExternalPart | MultiPart


class UnknownExtension(msgspec.Struct, frozen=True, kw_only=True):
    """An extension this code does not interpret, kept as its exact CBOR bytes (draft §2.3)."""

    key: int | str
    cbor: bytes

    @property
    def value(self) -> Any:
        """The decoded CBOR value."""
        return cbor2.loads(self.cbor)

    @classmethod
    def of(cls, key: int | str, value: Any) -> UnknownExtension:
        """Build an extension from a Python value."""
        return cls(key=key, cbor=cbor2.dumps(value, canonical=True))


class Extensions(msgspec.Struct, frozen=True, kw_only=True):
    """mimiExtensions: senderUri (1), roomUri (2) and any others, unchanged."""

    sender_uri: str | None = None
    room_uri: str | None = None
    unknown: tuple[UnknownExtension, ...] = ()

    def get(self, key: int | str) -> UnknownExtension | None:
        """Return the unknown extension with this key, if present."""
        for ext in self.unknown:
            if ext.key == key:
                return ext
        return None


NO_EXTENSIONS = Extensions()


class MimiContent(msgspec.Struct, frozen=True, kw_only=True):
    """mimiContent (draft §2.1); `salt` is generated when not given."""

    salt: bytes = msgspec.field(default_factory=_SALTS.take)
    replaces: bytes | None = None
    topic_id: bytes = b""
    expires: Expiration | None = None
    in_reply_to: bytes | None = None
    extensions: Extensions = NO_EXTENSIONS
    nested_part: NestedPart


def walk_parts(part: NestedPart) -> list[NestedPart]:
    """Return every part in depth-first order, i.e. indexed by the draft's partIndex (§2.4)."""
    out = [part]
    if isinstance(part, MultiPart):
        for child in part.parts:
            out.extend(walk_parts(child))
    return out
