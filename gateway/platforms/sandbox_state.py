"""The sandbox platforms' own state: simulated users, their Olm accounts, keys and inboxes.

Olm accounts are vodozemac pickles and inbox payloads are AES-256-GCM sealed, both under the
sandbox key (`<data_dir>/sandbox-key`), so the decrypted messages the simulated users hold
never reach the database file in clear (the gateway itself must not be able to read them).

An Olm account changes with each message it decrypts or encrypts, and replicas sharing the
database may handle one user at once: an account is saved only over the version it was read
at (`olm_version`, compare and set), else `StaleAccount` and the caller starts again from the
stored account. On PostgreSQL the row is locked NOWAIT first: a write unit never waits for
another replica's transaction.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

import msgspec
import vodozemac
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.clock import now_ms
from gateway.crypto import OlmParty
from gateway.platforms.base import ClaimedBundle, SignedOneTimeKey
from gateway.secretfiles import load_or_create
from gateway.store import Store, Tx, is_lock_not_available
from gateway.store import sandbox as sandbox_store
from gateway.store.sandbox import OutboundSession, SandboxUser, StoredKey, UserKeys

__all__ = [
    "REPLENISH_BELOW",
    "SandboxState",
    "SandboxUser",
    "StaleAccount",
    "load_sandbox_key",
]

ONE_TIME_KEYS = 20
REPLENISH_BELOW = 5
# Unpickled Olm accounts kept in memory (the bench's users and more; a sandbox is small).
PARTY_CACHE = 4096
# Users kept in memory once read (a few hundred bytes each).
USER_CACHE = 100_000


def load_sandbox_key(data_dir: Path) -> bytes:
    """The 32-byte key of the sandbox's pickles and sealed inboxes (created once, 0600)."""
    key, _ = load_or_create(data_dir / "sandbox-key", lambda: secrets.token_bytes(32))
    return key


class StaleAccount(Exception):
    """The Olm account changed (or is being changed) since it was read: read it again."""


class SandboxState:
    """Reads and writes the `sandbox_` tables."""

    def __init__(self, store: Store, key: bytes) -> None:
        self.store = store
        self.key = key
        self._aead = AESGCM(key)
        # uri -> (account, the olm_version it was committed as). Restoring a pickle costs far
        # more than the version read that validates a cached account against the shared row.
        self._parties: dict[str, tuple[OlmParty, int]] = {}
        # Users found (a user is never changed nor deleted, so any replica may keep it).
        self._users: dict[str, SandboxUser] = {}

    def seal(self, payload: dict[str, Any]) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, msgspec.json.encode(payload), b"sandbox-inbox")

    def unseal(self, sealed: bytes) -> Any:
        return msgspec.json.decode(self._aead.decrypt(sealed[:12], sealed[12:], b"sandbox-inbox"))

    async def create(self, user: SandboxUser) -> bool:
        """Create the user with a fresh Olm account and published keys; False if it exists."""
        party = OlmParty()
        bundle = party.key_bundle(ONE_TIME_KEYS, fallback=True)
        fb = bundle.fallback_key
        assert fb is not None
        keys = UserKeys(bundle.identity_key, bundle.signing_key)
        one_time = [StoredKey(kid, k.key, k.signature) for kid, k in bundle.one_time_keys.items()]

        async def unit(tx: Tx) -> bool:
            if await sandbox_store.user_exists(tx, user.uri):
                return False
            await sandbox_store.insert_user(tx, user, keys, party.pickle(self.key), now_ms())
            await sandbox_store.publish_one_time_keys(tx, user.uri, one_time)
            await sandbox_store.publish_fallback_key(
                tx, user.uri, StoredKey(fb.key_id, fb.key, fb.signature)
            )
            return True

        return await self.store.write("sandbox_user_create", unit)

    async def user(self, uri: str) -> SandboxUser | None:
        """The user of `uri`, read once and then kept (a user is never changed nor deleted);
        a user not found is looked up again next time (another replica may create it)."""
        found = self._users.get(uri)
        if found is None:
            found = await sandbox_store.user(self.store, uri)
            if found is not None:
                if len(self._users) >= USER_CACHE:
                    self._users.pop(next(iter(self._users)))  # the oldest found
                self._users[uri] = found
        return found

    async def keys(self, uri: str) -> UserKeys | None:
        """The user's published identity and signing keys."""
        return await sandbox_store.user_keys(self.store, uri)

    async def party(self, uri: str) -> tuple[OlmParty, int]:
        """The user's Olm account and the version it was read at (for `save_party_in`).

        A cached account is taken out of the cache: the caller owns it (it mutates it) and it
        comes back only once saved. If the save fails, the next read restores the pickle.
        """
        hit = self._parties.pop(uri, None)
        if hit is not None:
            version = await sandbox_store.olm_version(self.store, uri)
            if version == hit[1]:  # nobody (no replica) saved the account since
                return hit
        account = await sandbox_store.olm_account(self.store, uri)
        assert account is not None
        pickle, version = account
        return OlmParty.from_pickle(pickle, self.key), version

    def put_back(self, uri: str, party: OlmParty, version: int) -> None:
        """Return an account read at `version` and left unchanged (e.g. a failed decryption)."""
        self._remember(uri, party, version)

    def _remember(self, uri: str, party: OlmParty, version: int) -> None:
        if len(self._parties) >= PARTY_CACHE:
            self._parties.pop(next(iter(self._parties)))  # the oldest saved
        self._parties[uri] = (party, version)

    async def save_party_in(self, tx: Tx, uri: str, party: OlmParty, version: int) -> None:
        """Save the account over `version`; StaleAccount if it moved or is locked meanwhile."""
        try:
            current = await sandbox_store.lock_olm_version(tx, uri)
        except Exception as exc:
            if is_lock_not_available(exc):
                raise StaleAccount(uri) from None
            raise
        if current != version:
            raise StaleAccount(uri)
        await sandbox_store.save_olm_account(tx, uri, party.pickle(self.key), version + 1)
        tx.on_commit(lambda: self._remember(uri, party, version + 1))

    async def claim(self, uri: str) -> tuple[ClaimedBundle | None, int]:
        """Claim one one-time key (or give the fallback); also return how many are left."""

        async def unit(tx: Tx) -> tuple[ClaimedBundle | None, int]:
            keys = await sandbox_store.user_keys(tx, uri)
            if keys is None:
                return None, 0
            otk = await sandbox_store.claim_one_time_key(tx, uri, now_ms())
            fallback = None if otk is not None else await sandbox_store.fallback_key(tx, uri)
            left = await sandbox_store.unclaimed_key_count(tx, uri)
            return ClaimedBundle(
                user=uri,
                identity_key=keys.identity_key,
                signing_key=keys.signing_key,
                one_time_key=None if otk is None else SignedOneTimeKey(**otk._asdict()),
                fallback_key=None if fallback is None else SignedOneTimeKey(**fallback._asdict()),
            ), left

        return await self.store.write("sandbox_key_claim", unit)

    async def replenish(self, uri: str) -> None:
        """Publish fresh one-time keys, as a client does when its server says it is low."""
        party, version = await self.party(uri)
        bundle = party.key_bundle(ONE_TIME_KEYS)
        fresh = [StoredKey(kid, k.key, k.signature) for kid, k in bundle.one_time_keys.items()]

        async def unit(tx: Tx) -> None:
            await self.save_party_in(tx, uri, party, version)
            await sandbox_store.publish_one_time_keys(tx, uri, fresh)

        await self.store.write("sandbox_keys_replenish", unit)

    async def has_received(self, uri: str, message_id: str) -> bool:
        return await sandbox_store.has_received(self.store, uri, message_id)

    async def deliver_in(self, tx: Tx, uri: str, message_id: str, payload: dict[str, Any]) -> None:
        """Put a decrypted webhook envelope in the user's inbox (once per message id)."""
        await sandbox_store.deliver(tx, uri, message_id, now_ms(), self.seal(payload))

    async def inbox(self, uri: str, limit: int = 1000) -> list[dict[str, Any]]:
        entries = await sandbox_store.inbox(self.store, uri, limit)
        return [
            {"received_at": entry.received_at, "payload": self.unseal(entry.sealed)}
            for entry in entries
        ]

    # -- groups (DESIGN §4.10): Megolm sessions pickled under the sandbox key -------------------

    async def group_item_seen(self, uri: str, item_id: str) -> bool:
        return await sandbox_store.group_item_seen(self.store, uri, item_id)

    async def mark_group_item_in(self, tx: Tx, uri: str, item_id: str) -> None:
        await sandbox_store.mark_group_item(tx, uri, item_id, now_ms())

    async def save_inbound_session_in(
        self, tx: Tx, uri: str, group: str, session: vodozemac.InboundGroupSession
    ) -> None:
        await sandbox_store.save_inbound_session(
            tx, uri, group, session.session_id, session.pickle(self.key), now_ms()
        )

    async def inbound_session(
        self, uri: str, group: str, session_id: str
    ) -> vodozemac.InboundGroupSession | None:
        pickle = await sandbox_store.inbound_session(self.store, uri, group, session_id)
        if pickle is None:
            return None
        return vodozemac.InboundGroupSession.from_pickle(pickle, self.key)

    async def outbound_session(
        self, uri: str, group: str
    ) -> tuple[int, vodozemac.GroupSession] | None:
        """The member's sending session in the group and the epoch it was shared in."""
        found = await sandbox_store.outbound_session(self.store, uri, group)
        if found is None:
            return None
        return found.epoch, vodozemac.GroupSession.from_pickle(found.pickle, self.key)

    async def save_outbound_session(
        self, uri: str, group: str, epoch: int, session: vodozemac.GroupSession
    ) -> None:
        """Keep the sending session (its ratchet moves with every message it encrypts)."""
        stored = OutboundSession(epoch, session.session_id, session.pickle(self.key))

        async def unit(tx: Tx) -> None:
            await sandbox_store.save_outbound_session(tx, uri, group, stored)

        await self.store.write("sandbox_group_session", unit)

    async def save_group_view_in(
        self, tx: Tx, uri: str, group: str, epoch: int, members: list[dict[str, Any]]
    ) -> None:
        sealed = self.seal({"epoch": epoch, "members": members})
        await sandbox_store.save_group_view(tx, uri, group, epoch, sealed)

    async def group_view(self, uri: str, group: str) -> dict[str, Any] | None:
        """`{epoch, members}` of the group as the member last heard of it, or None."""
        found = await sandbox_store.group_view(self.store, uri, group)
        return None if found is None else self.unseal(found[1])
