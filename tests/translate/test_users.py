"""Users: platform URIs, provider-scoped ids for third parties, and their way back."""

from __future__ import annotations

import os
import threading

import pytest

from gateway.content import new_salt
from gateway.translate import (
    TRANSLATORS,
    MemoryUserDirectory,
    TranslationError,
    native_user_id,
    scoped_user_id,
    split_uri,
    user_uri,
)


def test_platform_users_keep_their_native_ids() -> None:
    assert native_user_id("whatsapp", "mimi://whatsapp/u/4915112345678") == "4915112345678"
    assert user_uri("messenger", "6354821976152837", None) == "mimi://messenger/u/6354821976152837"


@pytest.mark.parametrize("service", sorted(TRANSLATORS))
def test_third_parties_get_stable_scoped_ids(service: str) -> None:
    alice, bob = "mimi://client-7/u/alice", "mimi://client-8/u/alice"
    first = scoped_user_id(service, alice)
    assert first == scoped_user_id(service, alice) and first.isdigit()
    assert first != scoped_user_id(service, bob)  # scoped to the provider (its client_id)
    assert first != scoped_user_id(service, alice, key=b"other deployment")
    assert TRANSLATORS[service].native_user_id(alice) == first
    directory = MemoryUserDirectory()
    assert directory.remember(service, alice) == first
    assert TRANSLATORS[service].user_uri(first, directory) == alice
    assert TRANSLATORS[service].user_uri(first) == f"mimi://{service}/u/{first}"


def test_whatsapp_scoped_ids_look_like_numbers_nobody_has() -> None:
    scoped = scoped_user_id("whatsapp", "mimi://client-7/u/alice")
    assert scoped.startswith("999") and len(scoped) == 15  # ITU country code 999 is unassigned


@pytest.mark.parametrize("uri", ["https://x/u/a", "mimi://x/a", "mimi:///u/a", "mimi://x/u/"])
def test_malformed_uris_are_clear_errors(uri: str) -> None:
    with pytest.raises(TranslationError):
        split_uri(uri)


@pytest.mark.skipif(
    threading.active_count() > 1 or not hasattr(os, "fork"), reason="fork needs one thread"
)
def test_salts_are_distinct_across_a_fork() -> None:
    parent = new_salt()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.write(write, new_salt())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 16)
    assert len(child) == 16 and child != new_salt() and child != parent
