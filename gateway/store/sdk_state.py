"""The SDK's own local SQLite file (`gateway/sdk/state.py`): its schema and statements.

Synchronous, on a `sqlite3.Connection` in autocommit mode: the SDK's Olm calls are synchronous
and each statement here is one small, durable write or lookup. Olm accounts arrive already
pickled under the caller's key; this module stores and returns opaque bytes.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS parties (user_uri TEXT PRIMARY KEY, pickle BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS peers (peer_uri TEXT PRIMARY KEY, identity_key TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS refs (
    service TEXT NOT NULL, native_id TEXT NOT NULL, mimi_id BLOB NOT NULL,
    PRIMARY KEY (service, native_id)
);
CREATE INDEX IF NOT EXISTS refs_by_mimi ON refs (service, mimi_id);
CREATE TABLE IF NOT EXISTS seen (message_id TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS megolm_out (
    user_uri TEXT NOT NULL, group_uri TEXT NOT NULL, epoch INTEGER NOT NULL, pickle TEXT NOT NULL,
    PRIMARY KEY (user_uri, group_uri)
);
CREATE TABLE IF NOT EXISTS megolm_in (
    user_uri TEXT NOT NULL, group_uri TEXT NOT NULL, session_id TEXT NOT NULL,
    pickle TEXT NOT NULL, PRIMARY KEY (user_uri, group_uri, session_id)
);
"""

PARTY_SQL = "SELECT pickle FROM parties WHERE user_uri = ?"
MEGOLM_OUT_SQL = "SELECT epoch, pickle FROM megolm_out WHERE user_uri = ? AND group_uri = ?"
SAVE_MEGOLM_OUT_SQL = (
    "INSERT INTO megolm_out (user_uri, group_uri, epoch, pickle) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (user_uri, group_uri) DO UPDATE SET epoch = excluded.epoch, "
    "pickle = excluded.pickle"
)
MEGOLM_IN_SQL = (
    "SELECT pickle FROM megolm_in WHERE user_uri = ? AND group_uri = ? AND session_id = ?"
)
SAVE_MEGOLM_IN_SQL = (
    "INSERT INTO megolm_in (user_uri, group_uri, session_id, pickle) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (user_uri, group_uri, session_id) DO UPDATE SET pickle = excluded.pickle"
)
SAVE_PARTY_SQL = (
    "INSERT INTO parties (user_uri, pickle) VALUES (?, ?) "
    "ON CONFLICT (user_uri) DO UPDATE SET pickle = excluded.pickle"
)
PEER_KEY_SQL = "SELECT identity_key FROM peers WHERE peer_uri = ?"
FORGET_PEER_SQL = "DELETE FROM peers WHERE peer_uri = ?"
SET_PEER_KEY_SQL = (
    "INSERT INTO peers (peer_uri, identity_key) VALUES (?, ?) "
    "ON CONFLICT (peer_uri) DO UPDATE SET identity_key = excluded.identity_key"
)
MARK_SEEN_SQL = "INSERT INTO seen (message_id) VALUES (?) ON CONFLICT DO NOTHING"
REMEMBER_REF_SQL = (
    "INSERT INTO refs (service, native_id, mimi_id) VALUES (?, ?, ?) "
    "ON CONFLICT DO UPDATE SET mimi_id = excluded.mimi_id"
)
MIMI_ID_SQL = "SELECT mimi_id FROM refs WHERE service = ? AND native_id = ?"
NATIVE_ID_SQL = "SELECT native_id FROM refs WHERE service = ? AND mimi_id = ?"


def open_state(path: str | Path) -> sqlite3.Connection:
    """Open (creating if need be) the SDK's state file, in autocommit and WAL mode."""
    db = sqlite3.connect(str(path), isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.executescript(SCHEMA)
    return db


def party_pickle(db: sqlite3.Connection, user_uri: str) -> bytes | None:
    """The stored (pickled, encrypted) Olm account of a local user, or None."""
    row = db.execute(PARTY_SQL, (user_uri,)).fetchone()
    return None if row is None else bytes(row[0])


def save_party_pickle(db: sqlite3.Connection, user_uri: str, pickle: bytes) -> None:
    """Store a local user's Olm account over the previous one."""
    db.execute(SAVE_PARTY_SQL, (user_uri, pickle))


def peer_key(db: sqlite3.Connection, peer_uri: str) -> str | None:
    """The identity key remembered for a peer, or None."""
    row = db.execute(PEER_KEY_SQL, (peer_uri,)).fetchone()
    return None if row is None else str(row[0])


def set_peer_key(db: sqlite3.Connection, peer_uri: str, identity_key: str | None) -> None:
    """Remember a peer's identity key; None forgets it."""
    if identity_key is None:
        db.execute(FORGET_PEER_SQL, (peer_uri,))
    else:
        db.execute(SET_PEER_KEY_SQL, (peer_uri, identity_key))


def mark_seen(db: sqlite3.Connection, message_id: str) -> bool:
    """Record a received message id; True when it was not recorded before."""
    return db.execute(MARK_SEEN_SQL, (message_id,)).rowcount == 1


def remember_ref(db: sqlite3.Connection, service: str, native_id: str, mimi_id: bytes) -> None:
    """Record that `native_id` on `service` is the MIMI message `mimi_id`."""
    db.execute(REMEMBER_REF_SQL, (service, native_id, mimi_id))


def mimi_id(db: sqlite3.Connection, service: str, native_id: str) -> bytes | None:
    """The MIMI message id remembered for a native id, or None."""
    row = db.execute(MIMI_ID_SQL, (service, native_id)).fetchone()
    return None if row is None else bytes(row[0])


def native_id(db: sqlite3.Connection, service: str, mimi_id: bytes) -> str | None:
    """The native id remembered for a MIMI message id, or None."""
    row = db.execute(NATIVE_ID_SQL, (service, mimi_id)).fetchone()
    return None if row is None else str(row[0])


def megolm_outbound(db: sqlite3.Connection, user_uri: str, group: str) -> tuple[int, str] | None:
    """(epoch, pickled outbound Megolm session) of a local user in a group, or None."""
    row = db.execute(MEGOLM_OUT_SQL, (user_uri, group)).fetchone()
    return None if row is None else (int(row[0]), str(row[1]))


def save_megolm_outbound(
    db: sqlite3.Connection, user_uri: str, group: str, epoch: int, pickle: str
) -> None:
    """Store a local user's outbound Megolm session of a group over the previous one."""
    db.execute(SAVE_MEGOLM_OUT_SQL, (user_uri, group, epoch, pickle))


def megolm_inbound(
    db: sqlite3.Connection, user_uri: str, group: str, session_id: str
) -> str | None:
    """A pickled inbound Megolm session a local user received for a group, or None."""
    row = db.execute(MEGOLM_IN_SQL, (user_uri, group, session_id)).fetchone()
    return None if row is None else str(row[0])


def save_megolm_inbound(
    db: sqlite3.Connection, user_uri: str, group: str, session_id: str, pickle: str
) -> None:
    """Store an inbound Megolm session (its ratchet moves forward as messages decrypt)."""
    db.execute(SAVE_MEGOLM_IN_SQL, (user_uri, group, session_id, pickle))
