"""gateway/store/sdk_state.py: the SDK's local SQLite file (SQLite only, by design)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.store import sdk_state


@pytest.fixture
def db(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    conn = sdk_state.open_state(tmp_path / "sdk.db")
    yield conn
    conn.close()


def test_a_party_pickle_is_replaced_on_save(db: sqlite3.Connection) -> None:
    assert sdk_state.party_pickle(db, "mimi://acme/u/a") is None
    sdk_state.save_party_pickle(db, "mimi://acme/u/a", b"v1")
    sdk_state.save_party_pickle(db, "mimi://acme/u/a", b"v2")
    assert sdk_state.party_pickle(db, "mimi://acme/u/a") == b"v2"


def test_a_peer_key_is_set_replaced_and_forgotten(db: sqlite3.Connection) -> None:
    sdk_state.set_peer_key(db, "mimi://whatsapp/u/1", "k1")
    sdk_state.set_peer_key(db, "mimi://whatsapp/u/1", "k2")
    assert sdk_state.peer_key(db, "mimi://whatsapp/u/1") == "k2"
    sdk_state.set_peer_key(db, "mimi://whatsapp/u/1", None)
    assert sdk_state.peer_key(db, "mimi://whatsapp/u/1") is None


def test_a_message_id_is_seen_for_the_first_time_once(db: sqlite3.Connection) -> None:
    assert sdk_state.mark_seen(db, "m1")
    assert not sdk_state.mark_seen(db, "m1")
    assert sdk_state.mark_seen(db, "m2")


def test_refs_map_both_ways(db: sqlite3.Connection) -> None:
    assert sdk_state.mimi_id(db, "whatsapp", "n1") is None
    sdk_state.remember_ref(db, "whatsapp", "n1", b"\x01" * 32)
    sdk_state.remember_ref(db, "whatsapp", "n1", b"\x02" * 32)
    assert sdk_state.mimi_id(db, "whatsapp", "n1") == b"\x02" * 32
    assert sdk_state.native_id(db, "whatsapp", b"\x02" * 32) == "n1"
    assert sdk_state.native_id(db, "messenger", b"\x02" * 32) is None


def test_the_state_survives_reopening(tmp_path: Path) -> None:
    first = sdk_state.open_state(tmp_path / "sdk.db")
    sdk_state.save_party_pickle(first, "mimi://acme/u/a", b"v1")
    first.close()
    again = sdk_state.open_state(tmp_path / "sdk.db")
    try:
        assert sdk_state.party_pickle(again, "mimi://acme/u/a") == b"v1"
    finally:
        again.close()
