"""The draft's examples decode, re-encode byte for byte, map to JSON and give their message IDs."""

from __future__ import annotations

import re

import cbor2
import pytest

from gateway.content import (
    ContentError,
    Disposition,
    ExternalPart,
    MultiPart,
    NullPart,
    SinglePart,
    content_cbor_b64,
    content_from_json,
    content_from_message,
    content_to_json,
    decode_content,
    encode_content,
    message_id,
    walk_parts,
)
from tests.content.paths import MIMI_EXAMPLES

CONTENT_EXAMPLES = sorted(
    p.stem for p in MIMI_EXAMPLES.glob("*.cbor") if p.stem != "implied-original"
)


def _stated_message_id(name: str) -> bytes | None:
    edn = (MIMI_EXAMPLES / f"{name}.edn").read_text()
    match = re.search(r"message ID = h'([0-9a-f]+)\s*\n#\s*([0-9a-f]+)'", edn)
    return bytes.fromhex(match.group(1) + match.group(2)) if match else None


def test_examples_are_present() -> None:
    assert len(CONTENT_EXAMPLES) >= 14


@pytest.mark.parametrize("name", CONTENT_EXAMPLES)
def test_example_round_trips_byte_exact(name: str) -> None:
    raw = (MIMI_EXAMPLES / f"{name}.cbor").read_bytes()
    content = decode_content(raw)
    assert encode_content(content) == raw
    assert cbor2.dumps(cbor2.loads(raw)) == raw  # the examples are deterministic CBOR


@pytest.mark.parametrize("name", CONTENT_EXAMPLES)
def test_example_json_round_trips(name: str) -> None:
    raw = (MIMI_EXAMPLES / f"{name}.cbor").read_bytes()
    content = decode_content(raw)
    as_json = content_to_json(content)
    assert content_from_json(as_json) == content
    assert content_from_message({"content_cbor": content_cbor_b64(content)}) == content
    assert encode_content(content_from_message({"content": as_json})) == raw


@pytest.mark.parametrize("name", CONTENT_EXAMPLES)
def test_example_message_id(name: str) -> None:
    stated = _stated_message_id(name)
    assert stated is not None, "every content example states its message ID"
    assert message_id(decode_content((MIMI_EXAMPLES / f"{name}.cbor").read_bytes())) == stated


def test_reply_refers_to_original() -> None:
    original = decode_content((MIMI_EXAMPLES / "original.cbor").read_bytes())
    reply = decode_content((MIMI_EXAMPLES / "reply.cbor").read_bytes())
    assert reply.in_reply_to == message_id(original)


def test_example_fields() -> None:
    attachment = decode_content((MIMI_EXAMPLES / "attachment.cbor").read_bytes())
    part = attachment.nested_part
    assert isinstance(part, ExternalPart)
    assert part.disposition == Disposition.ATTACHMENT
    assert (part.size, part.enc_alg, part.hash_alg) == (708234961, 1, 1)
    assert part.filename == "bigfile.mp4"
    assert attachment.extensions.sender_uri == "mimi://example.com/u/bob-jones"
    unlike = decode_content((MIMI_EXAMPLES / "unlike.cbor").read_bytes())
    assert isinstance(unlike.nested_part, NullPart)
    assert unlike.nested_part.disposition == Disposition.REACTION
    expiring = decode_content((MIMI_EXAMPLES / "expiring.cbor").read_bytes())
    assert expiring.expires is not None and not expiring.expires.relative
    nested = decode_content((MIMI_EXAMPLES / "multipart-3.cbor").read_bytes())
    assert isinstance(nested.nested_part, MultiPart)
    indexed = walk_parts(nested.nested_part)
    assert len(indexed) == 11  # partIndex 0..10 in the draft's nesting example
    assert isinstance(indexed[5], SinglePart) and indexed[5].content_type == "image/gif"


def test_example_json_shape() -> None:
    content = decode_content((MIMI_EXAMPLES / "reaction.cbor").read_bytes())
    as_json = content_to_json(content)
    assert as_json["nestedPart"] == {
        "disposition": "reaction",
        "language": "",
        "cardinality": "single",
        "contentType": "text/plain;charset=utf-8",
        "content": "4p2k",  # U+2764 HEAVY BLACK HEART
    }
    assert as_json["extensions"] == {
        "senderUri": "mimi://example.com/u/cathy-washington",
        "roomUri": "mimi://example.com/r/engineering_team",
    }
    assert as_json["replaces"] is None and as_json["expires"] is None
    assert "=" not in as_json["inReplyTo"]


def test_implied_fields_example_is_not_content() -> None:
    with pytest.raises(ContentError):
        decode_content((MIMI_EXAMPLES / "implied-original.cbor").read_bytes())
