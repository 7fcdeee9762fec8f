"""Locate raw CBOR items without decoding them, to keep unknown extensions byte for byte."""

from __future__ import annotations

from typing import Any

import cbor2

from gateway.content.errors import ContentError

_BREAK = 0xFF
# Far deeper than any MIMI content needs, far shallower than the interpreter's recursion limit.
MAX_NESTING = 64


def _head(data: bytes, pos: int) -> tuple[int, int, int | None, int]:
    """Return (major type, additional info, argument or None if indefinite, next position)."""
    initial = data[pos]
    major, info = initial >> 5, initial & 0x1F
    pos += 1
    if info < 24:
        return major, info, info, pos
    if info == 31:
        return major, info, None, pos
    size = {24: 1, 25: 2, 26: 4, 27: 8}.get(info)
    if size is None or pos + size > len(data):
        raise ContentError("mimiContent", "invalid CBOR head")
    return major, info, int.from_bytes(data[pos : pos + size], "big"), pos + size


def skip_item(data: bytes, pos: int, depth: int = 0) -> int:
    """Return the position just after the CBOR item that starts at `pos`."""
    if depth > MAX_NESTING:
        raise ContentError("mimiContent", f"CBOR nested more than {MAX_NESTING} levels deep")
    major, _, arg, pos = _head(data, pos)
    if major in (0, 1, 7):
        return pos
    if major == 6:
        return skip_item(data, pos, depth + 1)
    if arg is None:  # indefinite length: items (or chunks) until the break byte
        while data[pos] != _BREAK:
            pos = skip_item(data, pos, depth + 1)
        return pos + 1
    if major in (2, 3):
        return pos + arg
    for _ in range(arg * (2 if major == 5 else 1)):
        pos = skip_item(data, pos, depth + 1)
    return pos


def describe_key(key: Any) -> str:
    """A short, bounded description of a map key for an error message (never a huge repr)."""
    if isinstance(key, str) and len(key) <= 32:
        return repr(key)
    if type(key) is int and key.bit_length() <= 64:
        return str(key)
    return f"({type(key).__name__})"


def extension_value_spans(data: bytes) -> dict[Any, bytes]:
    """Map each key of the extensions map (item 5 of mimiContent) to its value's raw bytes."""
    try:
        _, _, _, pos = _head(data, 0)
        for _ in range(5):
            pos = skip_item(data, pos)
        _, _, count, pos = _head(data, pos)
        spans: dict[Any, bytes] = {}
        seen = 0
        while data[pos] != _BREAK if count is None else seen < count:
            key_end = skip_item(data, pos)
            key = cbor2.loads(data[pos:key_end])
            value_end = skip_item(data, key_end)
            if key in spans:  # draft §2.3: MUST NOT repeat a key
                raise ContentError("extensions", f"duplicate extension key {describe_key(key)}")
            spans[key] = data[key_end:value_end]
            pos, seen = value_end, seen + 1
        return spans
    except IndexError:
        raise ContentError("extensions", "truncated CBOR") from None
