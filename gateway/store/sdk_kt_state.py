"""The SDK's key transparency state (`gateway/sdk/transparency.py`), in its SQLite state file.

The last tree head it accepted, the newest version of each peer's keys it was given, the keys
it published for its own users, and which of its users' log entries it already reported.
"""

from __future__ import annotations

import sqlite3

SCHEMA = """
CREATE TABLE IF NOT EXISTS kt_head (id INTEGER PRIMARY KEY CHECK (id = 1), head TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS kt_peer_versions (peer_uri TEXT PRIMARY KEY, version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS kt_published (
    user_uri TEXT NOT NULL, identity_key TEXT NOT NULL, signing_key TEXT NOT NULL,
    PRIMARY KEY (user_uri, identity_key, signing_key)
);
CREATE TABLE IF NOT EXISTS kt_reported (
    user_uri TEXT NOT NULL, leaf_index INTEGER NOT NULL, PRIMARY KEY (user_uri, leaf_index)
);
"""


def prepare(db: sqlite3.Connection) -> None:
    """Create the tables on first use."""
    db.executescript(SCHEMA)


def last_head(db: sqlite3.Connection) -> str | None:
    """The JSON of the last accepted head, or None."""
    row = db.execute("SELECT head FROM kt_head WHERE id = 1").fetchone()
    return None if row is None else str(row[0])


def save_head(db: sqlite3.Connection, head_json: str) -> None:
    db.execute(
        "INSERT INTO kt_head (id, head) VALUES (1, ?) "
        "ON CONFLICT (id) DO UPDATE SET head = excluded.head",
        (head_json,),
    )


def peer_version(db: sqlite3.Connection, peer_uri: str) -> int:
    """The newest key version of `peer_uri` seen so far (0: none)."""
    row = db.execute("SELECT version FROM kt_peer_versions WHERE peer_uri = ?", (peer_uri,))
    found = row.fetchone()
    return 0 if found is None else int(found[0])


def set_peer_version(db: sqlite3.Connection, peer_uri: str, version: int) -> None:
    db.execute(
        "INSERT INTO kt_peer_versions (peer_uri, version) VALUES (?, ?) "
        "ON CONFLICT (peer_uri) DO UPDATE SET version = max(version, excluded.version)",
        (peer_uri, version),
    )


def add_published(
    db: sqlite3.Connection, user_uri: str, identity_key: str, signing_key: str
) -> None:
    db.execute(
        "INSERT INTO kt_published (user_uri, identity_key, signing_key) VALUES (?, ?, ?) "
        "ON CONFLICT DO NOTHING",
        (user_uri, identity_key, signing_key),
    )


def was_published(
    db: sqlite3.Connection, user_uri: str, identity_key: str, signing_key: str
) -> bool:
    row = db.execute(
        "SELECT 1 FROM kt_published WHERE user_uri = ? AND identity_key = ? AND signing_key = ?",
        (user_uri, identity_key, signing_key),
    ).fetchone()
    return row is not None


def mark_reported(db: sqlite3.Connection, user_uri: str, leaf_index: int) -> bool:
    """True the first time a log entry of `user_uri` is reported."""
    cursor = db.execute(
        "INSERT INTO kt_reported (user_uri, leaf_index) VALUES (?, ?) ON CONFLICT DO NOTHING",
        (user_uri, leaf_index),
    )
    return cursor.rowcount == 1


def published_users(db: sqlite3.Connection) -> list[str]:
    """The local users this SDK published keys for (the ones it monitors)."""
    rows = db.execute("SELECT DISTINCT user_uri FROM kt_published ORDER BY user_uri")
    return [str(row[0]) for row in rows]
