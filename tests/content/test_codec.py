"""Round trips of arbitrary content, JSON input rules, and the one error type on bad input."""

from __future__ import annotations

import contextlib

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.content import (
    ContentError,
    MimiContent,
    SinglePart,
    UnknownExtension,
    content_from_json,
    content_from_message,
    content_to_json,
    decode_content,
    encode_content,
    message_id,
)
from gateway.content.jsonmap import b64u_encode
from tests.content.paths import MIMI_EXAMPLES
from tests.content.strategies import contents

TEXT = SinglePart(content_type="text/plain;charset=utf-8", content=b"hi")


@given(contents)
def test_cbor_round_trip(content: MimiContent) -> None:
    raw = encode_content(content)
    assert decode_content(raw) == content
    assert encode_content(decode_content(raw)) == raw


@given(contents)
def test_json_round_trip(content: MimiContent) -> None:
    assert content_from_json(content_to_json(content)) == content


@given(contents)
def test_extension_map_is_deterministic(content: MimiContent) -> None:
    doc = cbor2.loads(encode_content(content))
    encoded_keys = [cbor2.dumps(k) for k in doc[5]]
    assert encoded_keys == sorted(encoded_keys)  # RFC 8949 §4.2.1, draft §5.1


def test_salt_is_generated_when_omitted() -> None:
    body = {"nestedPart": {"cardinality": "single", "contentType": "text/plain", "content": ""}}
    first, second = content_from_json(body), content_from_json(body)
    assert len(first.salt) == 16 and first.salt != second.salt
    assert first.nested_part == SinglePart(content_type="text/plain", content=b"")


def test_unknown_extensions_keep_their_bytes() -> None:
    half_float = b"\xf9\x3c\x00"  # 1.0 as a half float; re-encoding a float would lengthen it
    content = MimiContent(
        nested_part=TEXT,
        extensions=MimiContent(nested_part=TEXT).extensions.__class__(
            sender_uri="mimi://a/u/b",
            unknown=(
                UnknownExtension(key=256, cbor=half_float),
                UnknownExtension(key="12", cbor=b"\x01"),
                UnknownExtension(key="senderUri", cbor=b"\x02"),
                UnknownExtension(key=-5, cbor=b"\x60"),
            ),
        ),
    )
    raw = encode_content(content)
    assert half_float in raw
    back = decode_content(raw)
    assert {u.key: u.cbor for u in back.extensions.unknown} == {
        256: half_float, "12": b"\x01", "senderUri": b"\x02", -5: b"\x60"
    }  # fmt: skip
    as_json = content_to_json(content)["extensions"]
    assert set(as_json) == {"senderUri", "256", "~12", "~senderUri", "-5"}
    assert content_from_json(content_to_json(back)) == back
    assert back.extensions.get(256) is not None and back.extensions.get(256).value == 1.0


def test_message_id_needs_a_sender() -> None:
    with pytest.raises(ContentError) as err:
        message_id(MimiContent(nested_part=TEXT))
    assert err.value.field == "extensions.senderUri"
    assert len(message_id(MimiContent(nested_part=TEXT), "mimi://a/u/b")) == 32


def _doc(**changes: object) -> bytes:
    fields = {"salt": b"x" * 16, "replaces": None, "topic": b"", "expires": None,
              "reply": None, "ext": {}, "part": [1, "", 0]}  # fmt: skip
    fields.update(changes)
    return cbor2.dumps(list(fields.values()))


BAD_CBOR = [
    (b"", "mimiContent"),
    (b"\xff", "mimiContent"),
    (cbor2.dumps([1, 2, 3]), "mimiContent"),
    (_doc() + b"\x00", "mimiContent"),
    (_doc(salt=b"x" * 15), "salt"),
    (_doc(replaces=b"y"), "replaces"),
    (_doc(topic="t"), "topicId"),
    (_doc(expires=[1, 2]), "expires"),
    (_doc(expires=[True, -1]), "expires.time"),
    (_doc(ext=[]), "extensions"),
    (_doc(ext={1: 5}), "extensions.senderUri"),
    (_doc(ext={b"k": 5}), "extensions"),
    (_doc(ext={"": 5}), "extensions"),
    (_doc(ext={True: 5}), "extensions"),
    (_doc(part=[1, "", 4]), "nestedPart.cardinality"),
    (_doc(part=[256, "", 0]), "nestedPart.disposition"),
    (_doc(part=[1, 5, 0]), "nestedPart.language"),
    (_doc(part=[1, "", 1, "t"]), "nestedPart"),
    (_doc(part=[1, "", 1, "t", "s"]), "nestedPart.content"),
    (_doc(part=[1, "", 2, "t", "u", 0, -1, 0, b"", b"", b"", 0, b"", "", ""]), "nestedPart.size"),
    (_doc(part=[1, "", 3, 0, [[1, "", 0]]]), "nestedPart.parts"),
    (_doc(part=[1, "", 3, 0, [[1, "", 0], [1, ""]]]), "nestedPart.parts[1]"),
    (_doc(part=[1, "", 3, 5, []]), "nestedPart.partSemantics"),
    (_doc(part=cbor2.CBORTag(1, 0)), "nestedPart"),
]


@pytest.mark.parametrize(("raw", "field"), BAD_CBOR)
def test_malformed_cbor_names_the_field(raw: bytes, field: str) -> None:
    with pytest.raises(ContentError) as err:
        decode_content(raw)
    assert err.value.field == field


def test_duplicate_extension_key_is_rejected() -> None:
    head = cbor2.dumps([b"x" * 16, None, b"", None, None])[1:]
    raw = b"\x87" + head + b"\xa2\x01\x61a\x01\x61b" + cbor2.dumps([1, "", 0])
    with pytest.raises(ContentError) as err:
        decode_content(raw)
    assert err.value.field == "extensions"


def test_too_deep_nesting_is_rejected() -> None:
    leaf = [1, "", 0]
    part = leaf
    for _ in range(4):
        part = [1, "", 3, 2, [part, leaf]]
    with pytest.raises(ContentError, match="4 levels"):
        decode_content(cbor2.dumps([b"x" * 16, None, b"", None, None, {}, part]))


HEAD = [b"x" * 16, None, b"", None, None]
DEEP = b"\x81" * 5_000 + b"\x80"


@pytest.mark.parametrize(
    "key", [10**5_000, -(10**5_000), 2**60, b"k" * 10_000], ids=["huge", "-huge", "2^60", "bytes"]
)
def test_invalid_extension_key_is_named_briefly(key: object) -> None:
    with pytest.raises(ContentError) as err:
        decode_content(cbor2.dumps([*HEAD, {key: 1}, [1, "", 0]]))
    assert err.value.field == "extensions"
    assert len(str(err.value)) < 100


@pytest.mark.parametrize(
    "raw",
    [
        DEEP,  # the whole item
        b"\x87" + cbor2.dumps(HEAD)[1:] + b"\xa1\x07" + DEEP + cbor2.dumps([1, "", 0]),
        b"\x87" + cbor2.dumps(HEAD)[1:] + b"\xa1\x07" + b"\xc6" * 5_000 + b"\x00",
    ],
    ids=["document", "extension", "tags"],
)
def test_deep_cbor_is_a_content_error(raw: bytes) -> None:
    with pytest.raises(ContentError, match=r"deep|depth"):
        decode_content(raw)


def test_deep_cbor_extension_in_json_is_a_content_error() -> None:
    body = {"nestedPart": {"cardinality": "nullpart"}, "extensions": {"7": b64u_encode(DEEP)}}
    with pytest.raises(ContentError, match="deep"):
        content_from_json(body)


def test_huge_integer_extension_name_in_json_is_a_content_error() -> None:
    body = {"nestedPart": {"cardinality": "nullpart"}, "extensions": {"9" * 5_000: "AQ"}}
    with pytest.raises(ContentError, match="out of range"):
        content_from_json(body)


@settings(max_examples=300)
@given(st.binary(max_size=80))
def test_random_bytes_only_raise_content_error(raw: bytes) -> None:
    with contextlib.suppress(ContentError):
        decode_content(raw)


@given(st.data())
def test_mutated_examples_only_raise_content_error(data: st.DataObject) -> None:
    raw = bytearray((MIMI_EXAMPLES / "attachment.cbor").read_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    with contextlib.suppress(ContentError):
        decode_content(bytes(raw))


BAD_JSON = [
    ([], "content"),
    ({}, "nestedPart"),
    ({"salt": "AAAA", "nestedPart": {"cardinality": "nullpart"}}, "salt"),
    ({"salt": "!!", "nestedPart": {"cardinality": "nullpart"}}, "salt"),
    ({"nestedPart": {"cardinality": "double"}}, "nestedPart.cardinality"),
    ({"nestedPart": {"cardinality": "nullpart", "disposition": "loud"}}, "nestedPart.disposition"),
    ({"nestedPart": {"cardinality": "single", "contentType": 3}}, "nestedPart.contentType"),
    ({"nestedPart": {"cardinality": "single", "contentType": "t"}}, "nestedPart.content"),
    ({"nestedPart": {"cardinality": "external", "contentType": "t", "url": "u", "size": -1}},
     "nestedPart.size"),
    ({"nestedPart": {"cardinality": "multi", "partSemantics": "processAll", "parts": []}},
     "nestedPart.parts"),
    ({"nestedPart": {"cardinality": "nullpart"}, "expires": {"relative": 1}}, "expires"),
    ({"nestedPart": {"cardinality": "nullpart"}, "inReplyTo": "AAAA"}, "inReplyTo"),
    ({"nestedPart": {"cardinality": "nullpart"}, "extensions": {"senderUri": 1}},
     "extensions.senderUri"),
    ({"nestedPart": {"cardinality": "nullpart"}, "extensions": {"7": "__8"}}, "extensions.7"),
    ({"nestedPart": {"cardinality": "nullpart"}, "extensions": {"1": "AQ"}}, "extensions.1"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "field"), BAD_JSON)
def test_malformed_json_names_the_field(body: object, field: str) -> None:
    with pytest.raises(ContentError) as err:
        content_from_json(body)
    assert err.value.field == field


def test_message_takes_content_or_content_cbor() -> None:
    with pytest.raises(ContentError):
        content_from_message({})
    with pytest.raises(ContentError):
        content_from_message({"content": {}, "content_cbor": ""})
    with pytest.raises(ContentError):
        content_from_message({"content_cbor": "AAA"})
