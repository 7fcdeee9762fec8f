"""Megolm state of the SDK for groups (DESIGN §4.10): one outbound session per group and epoch.

`GroupCrypto` makes a new outbound `vodozemac.GroupSession` whenever the group's epoch differs
from the one of its current session (the caller then shares the returned room key over Olm),
encrypts group plaintexts into the wire shape `{"protocol": "megolm.v1", ...}`, imports room keys
received over Olm as inbound sessions and decrypts group messages. With a `MegolmStore` (the
SDK's state file) every session is kept, pickled under the caller's key, across restarts.
"""

from __future__ import annotations

import base64
from typing import Protocol

import msgspec
import vodozemac


class MegolmStore(Protocol):
    """Where a local user's Megolm sessions are kept (gateway.sdk.state.SdkState)."""

    def load_outbound(
        self, user: str, group: str
    ) -> tuple[int, vodozemac.GroupSession] | None: ...

    def save_outbound(
        self, user: str, group: str, epoch: int, session: vodozemac.GroupSession
    ) -> None: ...

    def load_inbound(
        self, user: str, group: str, session_id: str
    ) -> vodozemac.InboundGroupSession | None: ...

    def save_inbound(
        self, user: str, group: str, session: vodozemac.InboundGroupSession
    ) -> None: ...


def room_key_plaintext(group: str, session: vodozemac.GroupSession) -> bytes:
    """The Olm plaintext of a room key share (DESIGN §4.10)."""
    return msgspec.json.encode({"room_key": {
        "group": group, "session_id": session.session_id,
        "session_key": session.session_key.to_base64(),
    }})  # fmt: skip


class GroupCrypto:
    """One local user's Megolm sessions; `sender_key` is its Curve25519 identity key."""

    def __init__(
        self, sender_key: str, *, store: MegolmStore | None = None, user: str = ""
    ) -> None:
        self._sender_key = sender_key
        self._store = store
        self._user = user
        self._outbound: dict[str, tuple[int, vodozemac.GroupSession]] = {}
        self._inbound: dict[tuple[str, str], vodozemac.InboundGroupSession] = {}

    def outbound(self, group: str, epoch: int) -> tuple[vodozemac.GroupSession, bytes | None]:
        """The session to send with at `epoch`; with a room-key plaintext to share if it is new."""
        current = self._outbound.get(group)
        if current is None and self._store is not None:
            current = self._store.load_outbound(self._user, group)
            if current is not None:
                self._outbound[group] = current
        if current is not None and current[0] == epoch:
            return current[1], None
        session = vodozemac.GroupSession()
        self._outbound[group] = (epoch, session)
        self._save_outbound(group)
        return session, room_key_plaintext(group, session)

    def forget_outbound(self, group: str) -> None:
        """Drop the current session: the next send shares a new one (after a 409 stale)."""
        current = self._outbound.pop(group, None)
        if current is not None and self._store is not None:
            self._store.save_outbound(self._user, group, -1, current[1])

    def _save_outbound(self, group: str) -> None:
        if self._store is not None:
            epoch, session = self._outbound[group]
            self._store.save_outbound(self._user, group, epoch, session)

    def encrypt(
        self, group: str, epoch: int, plaintext: bytes
    ) -> tuple[dict[str, str], bytes | None]:
        """The Megolm `encrypted` object for `plaintext`, and a room key to share first if any."""
        session, share = self.outbound(group, epoch)
        ciphertext = session.encrypt(plaintext)
        self._save_outbound(group)  # the ratchet moved: an index is never reused
        encrypted = {
            "protocol": "megolm.v1", "session_id": session.session_id,
            "body": base64.b64encode(ciphertext.to_bytes()).decode(),
            "sender_key": self._sender_key,
        }  # fmt: skip
        return encrypted, share

    def import_room_key(self, group: str, plaintext: bytes) -> str | None:
        """Import a room-key plaintext (decrypted over Olm) for `group`; its session id or None."""
        try:
            share = msgspec.json.decode(plaintext)["room_key"]
            if share["group"] != group:
                return None
            session = vodozemac.InboundGroupSession(vodozemac.SessionKey(share["session_key"]))
        except (KeyError, TypeError, ValueError, msgspec.DecodeError):
            return None
        if session.session_id != share["session_id"]:
            return None
        self._inbound[(group, session.session_id)] = session
        if self._store is not None:
            self._store.save_inbound(self._user, group, session)
        return session.session_id

    def _inbound_session(
        self, group: str, session_id: str
    ) -> vodozemac.InboundGroupSession | None:
        session = self._inbound.get((group, session_id))
        if session is None and self._store is not None:
            session = self._store.load_inbound(self._user, group, session_id)
            if session is not None:
                self._inbound[(group, session_id)] = session
        return session

    def decrypt(self, group: str, encrypted: dict[str, str]) -> bytes | None:
        """The plaintext of a Megolm `encrypted` object, or None without its session."""
        if encrypted.get("protocol") != "megolm.v1":
            return None
        session = self._inbound_session(group, encrypted.get("session_id", ""))
        if session is None:
            return None
        try:
            message = vodozemac.MegolmMessage.from_bytes(base64.b64decode(encrypted["body"]))
            plaintext = bytes(session.decrypt(message).plaintext)
        except Exception:  # vodozemac raises its own decode/decrypt errors
            return None
        if self._store is not None:
            self._store.save_inbound(self._user, group, session)
        return plaintext
