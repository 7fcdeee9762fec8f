"""Megolm state of the SDK for groups (DESIGN §4.10): one outbound session per group and epoch.

`GroupCrypto` makes a new outbound `vodozemac.GroupSession` whenever the group's epoch differs
from the one of its current session (the caller then shares the returned room key over Olm),
encrypts group plaintexts into the wire shape `{"protocol": "megolm.v1", ...}`, imports room keys
received over Olm as inbound sessions and decrypts group messages. Held in memory only.
"""

import base64

import msgspec
import vodozemac


class GroupCrypto:
    def __init__(self, sender_key: str) -> None:
        self._sender_key = sender_key
        self._outbound: dict[str, tuple[int, vodozemac.GroupSession]] = {}
        self._inbound: dict[tuple[str, str], vodozemac.InboundGroupSession] = {}

    def outbound(self, group: str, epoch: int) -> tuple[vodozemac.GroupSession, bytes | None]:
        """The session to send with at `epoch`; with a room-key plaintext to share if it is new."""
        current = self._outbound.get(group)
        if current is not None and current[0] == epoch:
            return current[1], None
        session = vodozemac.GroupSession()
        self._outbound[group] = (epoch, session)
        share = {"room_key": {
            "group": group, "session_id": session.session_id,
            "session_key": session.session_key.to_base64(),
        }}  # fmt: skip
        return session, msgspec.json.encode(share)

    def encrypt(
        self, group: str, epoch: int, plaintext: bytes
    ) -> tuple[dict[str, str], bytes | None]:
        """The Megolm `encrypted` object for `plaintext`, and a room key to share first if any."""
        session, share = self.outbound(group, epoch)
        ciphertext = session.encrypt(plaintext)
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
        return session.session_id

    def decrypt(self, group: str, encrypted: dict[str, str]) -> bytes | None:
        """The plaintext of a Megolm `encrypted` object, or None without its session."""
        if encrypted.get("protocol") != "megolm.v1":
            return None
        session = self._inbound.get((group, encrypted.get("session_id", "")))
        if session is None:
            return None
        try:
            message = vodozemac.MegolmMessage.from_bytes(base64.b64decode(encrypted["body"]))
            return bytes(session.decrypt(message).plaintext)
        except Exception:  # vodozemac raises its own decode/decrypt errors
            return None
