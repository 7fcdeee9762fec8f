"""The SDK's local state in one small SQLite file: Olm accounts and sessions, peers, message ids.

Olm state is stored only as vodozemac pickles encrypted under the caller's 32-byte key, so the
file alone does not open any conversation. A restart picks up every session where it was.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from gateway.crypto import OlmParty
from gateway.translate.neutral import derived_message_id

SCHEMA = """
CREATE TABLE IF NOT EXISTS parties (user_uri TEXT PRIMARY KEY, pickle BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS peers (peer_uri TEXT PRIMARY KEY, identity_key TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS refs (
    service TEXT NOT NULL, native_id TEXT NOT NULL, mimi_id BLOB NOT NULL,
    PRIMARY KEY (service, native_id)
);
CREATE INDEX IF NOT EXISTS refs_by_mimi ON refs (service, mimi_id);
CREATE TABLE IF NOT EXISTS seen (message_id TEXT PRIMARY KEY);
"""


class SdkState:
    """Olm parties per local user, peers' identity keys, and MIMI <-> native message ids.

    Also the translators' `MessageRefs`: a reaction or reply names a native message id; the
    MIMI message id it stands for is remembered here when the message is sent or received.
    """

    def __init__(self, path: str | Path, pickle_key: bytes) -> None:
        if len(pickle_key) != 32:
            raise ValueError("the pickle key must be 32 bytes")
        self.key = pickle_key
        self.db_path = Path(path)
        self.db = sqlite3.connect(str(path), isolation_level=None)
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.executescript(SCHEMA)
        self._parties: dict[str, OlmParty] = {}

    def close(self) -> None:
        self.db.close()

    # -- Olm -----------------------------------------------------------------------------

    def party(self, user_uri: str) -> OlmParty:
        """The user's Olm party, created on first use."""
        party = self._parties.get(user_uri)
        if party is None:
            row = self.db.execute(
                "SELECT pickle FROM parties WHERE user_uri = ?", (user_uri,)
            ).fetchone()
            party = OlmParty() if row is None else OlmParty.from_pickle(row[0], self.key)
            self._parties[user_uri] = party
            if row is None:
                self.save(user_uri)
        return party

    def save(self, user_uri: str) -> None:
        """Persist the user's account and sessions (after every encrypt and decrypt)."""
        pickle = self._parties[user_uri].pickle(self.key)
        self.db.execute(
            "INSERT INTO parties (user_uri, pickle) VALUES (?, ?) "
            "ON CONFLICT (user_uri) DO UPDATE SET pickle = excluded.pickle",
            (user_uri, pickle),
        )

    def peer_key(self, peer_uri: str) -> str | None:
        row = self.db.execute(
            "SELECT identity_key FROM peers WHERE peer_uri = ?", (peer_uri,)
        ).fetchone()
        return None if row is None else str(row[0])

    def set_peer_key(self, peer_uri: str, identity_key: str | None) -> None:
        if identity_key is None:
            self.db.execute("DELETE FROM peers WHERE peer_uri = ?", (peer_uri,))
            return
        self.db.execute(
            "INSERT INTO peers (peer_uri, identity_key) VALUES (?, ?) "
            "ON CONFLICT (peer_uri) DO UPDATE SET identity_key = excluded.identity_key",
            (peer_uri, identity_key),
        )

    # -- received messages, once ------------------------------------------------------------

    def first_time(self, message_id: str) -> bool:
        """True the first time a message id is seen (redeliveries are at-least-once)."""
        cursor = self.db.execute(
            "INSERT INTO seen (message_id) VALUES (?) ON CONFLICT DO NOTHING", (message_id,)
        )
        return cursor.rowcount == 1

    # -- MessageRefs -----------------------------------------------------------------------

    def remember(self, service: str, native_id: str, mimi_id: bytes) -> None:
        """Record that `native_id` on `service` is the MIMI message `mimi_id`."""
        self.db.execute(
            "INSERT INTO refs (service, native_id, mimi_id) VALUES (?, ?, ?) "
            "ON CONFLICT DO UPDATE SET mimi_id = excluded.mimi_id",
            (service, native_id, mimi_id),
        )

    def mimi_id(self, service: str, native_id: str) -> bytes:
        row = self.db.execute(
            "SELECT mimi_id FROM refs WHERE service = ? AND native_id = ?", (service, native_id)
        ).fetchone()
        if row is not None:
            return bytes(row[0])
        derived = derived_message_id(service, native_id)
        self.remember(service, native_id, derived)
        return derived

    def native_id(self, service: str, mimi_id: bytes) -> str | None:
        row = self.db.execute(
            "SELECT native_id FROM refs WHERE service = ? AND mimi_id = ?", (service, mimi_id)
        ).fetchone()
        return None if row is None else str(row[0])
