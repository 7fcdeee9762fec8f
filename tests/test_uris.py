"""User URIs and local ids match exactly: no trailing newline, carriage return or NUL."""

from __future__ import annotations

import pytest

from gateway.uris import AUTHORITY, LOCAL_ID, UserUri, parse_user_uri

BAD_ENDINGS = ["\n", "\r", "\x00", "\r\n", " "]


def test_well_formed_uri_parses() -> None:
    assert parse_user_uri("mimi://whatsapp/u/4915112345678") == UserUri(
        "whatsapp", "4915112345678"
    )


@pytest.mark.parametrize("ending", BAD_ENDINGS, ids=repr)
@pytest.mark.parametrize(
    "text", ["mimi://acme/u/alice", "mimi://whatsapp/u/4915112345678"], ids=["third", "platform"]
)
def test_uri_with_a_control_ending_is_refused(text: str, ending: str) -> None:
    assert parse_user_uri(text + ending) is None
    assert parse_user_uri(ending + text) is None


@pytest.mark.parametrize("ending", BAD_ENDINGS, ids=repr)
def test_local_id_and_authority_with_a_control_ending_are_refused(ending: str) -> None:
    assert LOCAL_ID.match("alice") and not LOCAL_ID.match("alice" + ending)
    assert AUTHORITY.match("acme") and not AUTHORITY.match("acme" + ending)


def test_control_character_inside_is_refused() -> None:
    assert parse_user_uri("mimi://acme/u/al\nice") is None
    assert parse_user_uri("mimi://ac\nme/u/alice") is None


def test_split_takes_native_ids_by_shape_and_parse_validates() -> None:
    from gateway.uris import parse_user_uri, split_user_uri

    assert split_user_uri("mimi://messenger/u/<PSID>") == ("messenger", "<PSID>")
    assert parse_user_uri("mimi://messenger/u/<PSID>") is None
    for bad in ("whatsapp/u/1", "mimi://whatsapp/1", "mimi:///u/1", "mimi://a/b/u/1"):
        assert split_user_uri(bad) is None
        assert parse_user_uri(bad) is None
