"""Hypothesis strategies for MIMI content, shared by content and translate tests."""

from __future__ import annotations

import cbor2
from hypothesis import strategies as st

from gateway.content import (
    Expiration,
    Extensions,
    ExternalPart,
    MimiContent,
    MultiPart,
    NullPart,
    SinglePart,
    UnknownExtension,
)

message_ids = st.binary(min_size=32, max_size=32)
dispositions = st.integers(0, 255)
languages = st.sampled_from(["", "en", "fr", "de,en"])

null_parts = st.builds(NullPart, disposition=dispositions, language=languages)
single_parts = st.builds(
    SinglePart,
    disposition=dispositions,
    language=languages,
    content_type=st.text(max_size=40),
    content=st.binary(max_size=64),
)
external_parts = st.builds(
    ExternalPart,
    disposition=dispositions,
    language=languages,
    content_type=st.text(max_size=30),
    url=st.text(max_size=60),
    expires=st.integers(0, 2**32 - 1),
    size=st.integers(0, 2**64 - 1),
    enc_alg=st.integers(0, 2**16 - 1),
    key=st.binary(max_size=32),
    nonce=st.binary(max_size=12),
    aad=st.binary(max_size=8),
    hash_alg=st.integers(0, 255),
    content_hash=st.binary(max_size=32),
    description=st.text(max_size=30),
    filename=st.text(max_size=20),
)


def _multi(children: st.SearchStrategy) -> st.SearchStrategy:
    return st.builds(
        MultiPart,
        disposition=dispositions,
        language=languages,
        part_semantics=st.integers(0, 2),
        parts=st.lists(children, min_size=2, max_size=3).map(tuple),
    )


leaf_parts = st.one_of(null_parts, single_parts, external_parts)
# At most 4 levels (draft §5.3): root multi, two more multis, leaves.
nested_parts = st.one_of(leaf_parts, _multi(st.one_of(leaf_parts, _multi(leaf_parts))))

cbor_values = st.recursive(
    st.one_of(st.integers(-(2**40), 2**40), st.text(max_size=10), st.binary(max_size=10),
              st.booleans(), st.none()),
    lambda inner: st.lists(inner, max_size=3),
    max_leaves=5,
)  # fmt: skip
unknown_extensions = st.dictionaries(
    st.one_of(
        st.integers(3, 2**53 - 1),
        st.integers(-(2**53) + 1, -1),
        st.text(min_size=1, max_size=20),
    ),
    cbor_values,
    max_size=3,
).map(
    # In the deterministic order the encoder writes and the decoder therefore returns.
    lambda d: tuple(
        UnknownExtension(key=k, cbor=cbor2.dumps(v))
        for k, v in sorted(d.items(), key=lambda kv: cbor2.dumps(kv[0]))
    )
)
extensions = st.builds(
    Extensions,
    sender_uri=st.none() | st.text(max_size=40),
    room_uri=st.none() | st.text(max_size=40),
    unknown=unknown_extensions,
)
contents = st.builds(
    MimiContent,
    salt=st.binary(min_size=16, max_size=16),
    replaces=st.none() | message_ids,
    topic_id=st.binary(max_size=8),
    expires=st.none()
    | st.builds(Expiration, relative=st.booleans(), time=st.integers(0, 2**32 - 1)),
    in_reply_to=st.none() | message_ids,
    extensions=extensions,
    nested_part=nested_parts,
)
