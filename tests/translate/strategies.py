"""Hypothesis strategies for neutral events each service can express without loss."""

from __future__ import annotations

import string

from hypothesis import strategies as st

from gateway.content import (
    Disposition,
    Expiration,
    Extensions,
    ExternalPart,
    MimiContent,
    NullPart,
    SinglePart,
)
from gateway.translate import Envelope, NeutralEvent
from gateway.translate.common import GEO_JSON, TEXT_PLAIN, VCARD
from gateway.translate.vcard import contacts_to_vcard
from tests.content.strategies import unknown_extensions
from tests.translate.helpers import KNOWN_IDS, PLATFORM_USER, THIRD_PARTY

ids = st.text(string.ascii_letters + string.digits + "_-", min_size=1, max_size=16)
words = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=40
)
plain = st.text(string.ascii_letters + " ", min_size=1, max_size=12)
non_reaction = st.sampled_from([d for d in range(12) if d != Disposition.REACTION])
languages = st.sampled_from(["", "en", "de,fr"])

texts = st.builds(
    SinglePart,
    disposition=non_reaction,
    language=languages,
    content_type=st.sampled_from([TEXT_PLAIN, "text/markdown;variant=GFM-MIMI", "text/plain"]),
    content=words.map(str.encode),
)
media = st.builds(
    ExternalPart,
    disposition=st.sampled_from(
        [Disposition.RENDER, Disposition.INLINE, Disposition.ATTACHMENT, Disposition.PREVIEW]
    ),
    language=languages,
    content_type=st.sampled_from(
        [
            "image/jpeg",
            "image/png",
            "image/gif",
            "image/webp",
            "audio/ogg",
            "audio/mpeg",
            "video/mp4",
            "video/3gpp",
            "application/pdf",
        ]
    ),
    url=st.sampled_from(["https://gw.example/v1/media/x1", "https://cdn.example/a/b.jpg?s=1"]),
    expires=st.integers(0, 2**32 - 1),
    size=st.integers(0, 400_000),
    enc_alg=st.integers(0, 3),
    key=st.binary(max_size=16),
    nonce=st.binary(max_size=12),
    hash_alg=st.integers(0, 2),
    content_hash=st.binary(max_size=32),
    description=st.text(max_size=60),
    filename=st.text(max_size=20),
)


def _geo(lat: float, lon: float, name: str | None) -> SinglePart:
    # Hand-written JSON, so that its formatting differs from what the translator writes.
    props = "{}" if name is None else f'{{"name": "{name}"}}'
    point = f'{{"type": "Point", "coordinates": [{lon!r}, {lat!r}]}}'
    text = f'{{"type": "Feature", "geometry": {point}, "properties": {props}}}'
    return SinglePart(content_type=GEO_JSON, content=text.encode())


locations = st.builds(
    _geo,
    st.floats(-90, 90, allow_nan=False),
    st.floats(-180, 180, allow_nan=False),
    st.none() | plain,
)
contacts = st.lists(
    st.fixed_dictionaries(
        {"name": st.fixed_dictionaries({"formatted_name": words}, optional={"first_name": words})},
        optional={
            "phones": st.lists(
                st.fixed_dictionaries({"phone": plain}, optional={"type": plain, "wa_id": plain}),
                min_size=1,
                max_size=2,
            ),
            "birthday": st.just("2000-01-31"),
        },
    ),
    min_size=1,
    max_size=2,
).map(lambda cs: SinglePart(content_type=VCARD, content=contacts_to_vcard(cs).encode()))
emojis = st.sampled_from(["❤", "👍", "😂", "🥳", "❤️"])
reactions = st.builds(
    lambda emoji, lang: SinglePart(disposition=Disposition.REACTION, language=lang,
                                   content_type=TEXT_PLAIN, content=emoji.encode()),
    emojis, languages,
)  # fmt: skip
targets = st.sampled_from(KNOWN_IDS)
message_fields = st.fixed_dictionaries(
    {},
    optional={
        "topic_id": st.binary(min_size=1, max_size=8),
        "expires": st.builds(Expiration, relative=st.booleans(), time=st.integers(0, 2**32 - 1)),
        "extensions": st.builds(
            Extensions, room_uri=st.none() | plain, unknown=unknown_extensions
        ),
    },
)


def contents(service: str) -> st.SearchStrategy[MimiContent]:
    """MIMI content that `service` expresses natively (each translates to one native message)."""
    leaves = st.one_of(texts, media, *((locations, contacts) if service == "whatsapp" else ()))
    edit_body = leaves if service == "whatsapp" else texts
    cases = [
        st.builds(
            lambda p, r, f: MimiContent(nested_part=p, in_reply_to=r, **f),
            leaves,
            st.none() | targets,
            message_fields,
        ),
        st.builds(
            lambda p, t, f: MimiContent(nested_part=p, in_reply_to=t, **f),
            reactions,
            targets,
            message_fields,
        ),
        st.builds(
            lambda t, r, f: MimiContent(
                nested_part=NullPart(disposition=Disposition.REACTION),
                in_reply_to=t,
                replaces=r,
                **f,
            ),
            targets,
            st.none() | targets,
            message_fields,
        ),
        st.builds(
            lambda p, t, f: MimiContent(nested_part=p, replaces=t, **f),
            edit_body,
            targets,
            message_fields,
        ),
    ]
    if service != "messenger":
        cases.append(
            st.builds(
                lambda t, f: MimiContent(nested_part=NullPart(), replaces=t, **f),
                targets,
                message_fields,
            )
        )
    return st.one_of(cases)


def messages(service: str) -> st.SearchStrategy[NeutralEvent]:
    """Message events from the third party to the platform user of `service`."""
    seconds = 1000 if service == "whatsapp" else 1
    return st.builds(
        lambda id, at, content, name: NeutralEvent(
            envelope=Envelope(
                id=id, sender=THIRD_PARTY, recipient=PLATFORM_USER[service], sent_at=at * seconds
            ),
            content=content,
            sender_name=name if service == "whatsapp" else None,
        ),
        ids, st.integers(0, 2**40), contents(service), plain,
    )  # fmt: skip
