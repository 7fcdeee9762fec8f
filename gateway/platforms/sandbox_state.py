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
import time
from pathlib import Path
from typing import Any

import msgspec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.crypto import OlmParty
from gateway.platforms.base import ClaimedBundle, SignedOneTimeKey
from gateway.secretfiles import load_or_create
from gateway.store import Store, Tx, is_lock_not_available

ONE_TIME_KEYS = 20
REPLENISH_BELOW = 5
# Unpickled Olm accounts kept in memory (the bench's users and more; a sandbox is small).
PARTY_CACHE = 4096


def now_ms() -> int:
    return int(time.time() * 1000)


def load_sandbox_key(data_dir: Path) -> bytes:
    """The 32-byte key of the sandbox's pickles and sealed inboxes (created once, 0600)."""
    key, _ = load_or_create(data_dir / "sandbox-key", lambda: secrets.token_bytes(32))
    return key


class StaleAccount(Exception):
    """The Olm account changed (or is being changed) since it was read: read it again."""


_LOCK_SQL = {
    "sqlite": "SELECT olm_version FROM sandbox_users WHERE uri = $1",
    "postgres": "SELECT olm_version FROM sandbox_users WHERE uri = $1 FOR UPDATE NOWAIT",
}


# A key another replica is claiming right now is skipped, not waited for (never handed twice:
# the claim is the row lock and `claimed_at`).
_CLAIM = (
    "SELECT key_id, key, signature FROM sandbox_one_time_keys "
    "WHERE user_uri = $1 AND claimed_at IS NULL ORDER BY key_id LIMIT 1"
)
_CLAIM_SQL = {"sqlite": _CLAIM, "postgres": _CLAIM + " FOR UPDATE SKIP LOCKED"}


class SandboxUser(msgspec.Struct, frozen=True, kw_only=True):
    uri: str
    service: str
    native_id: str
    name: str


class SandboxState:
    """Reads and writes the `sandbox_` tables."""

    def __init__(self, store: Store, key: bytes) -> None:
        self.store = store
        self.key = key
        self._aead = AESGCM(key)
        # uri -> (account, the olm_version it was committed as). Restoring a pickle costs far
        # more than the version read that validates a cached account against the shared row.
        self._parties: dict[str, tuple[OlmParty, int]] = {}

    def seal(self, payload: dict[str, Any]) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, msgspec.json.encode(payload), b"sandbox-inbox")

    def unseal(self, sealed: bytes) -> Any:
        return msgspec.json.decode(self._aead.decrypt(sealed[:12], sealed[12:], b"sandbox-inbox"))

    async def create(self, user: SandboxUser) -> bool:
        """Create the user with a fresh Olm account and published keys; False if it exists."""
        party = OlmParty()
        bundle = party.key_bundle(ONE_TIME_KEYS, fallback=True)

        async def unit(tx: Tx) -> bool:
            if await tx.fetchval("SELECT 1 FROM sandbox_users WHERE uri = $1", user.uri):
                return False
            await tx.execute(
                "INSERT INTO sandbox_users (uri, service, native_id, name, identity_key, "
                "signing_key, olm_state, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                user.uri, user.service, user.native_id, user.name, bundle.identity_key,
                bundle.signing_key, party.pickle(self.key), now_ms(),
            )  # fmt: skip
            await tx.executemany(
                "INSERT INTO sandbox_one_time_keys (user_uri, key_id, key, signature) "
                "VALUES ($1, $2, $3, $4)",
                [(user.uri, kid, k.key, k.signature) for kid, k in bundle.one_time_keys.items()],
            )
            fb = bundle.fallback_key
            assert fb is not None
            await tx.execute(
                "INSERT INTO sandbox_fallback_keys (user_uri, key_id, key, signature) "
                "VALUES ($1, $2, $3, $4)",
                user.uri, fb.key_id, fb.key, fb.signature,
            )  # fmt: skip
            return True

        return await self.store.write("sandbox_user_create", unit)

    async def user(self, uri: str) -> SandboxUser | None:
        row = await self.store.fetchrow(
            "SELECT uri, service, native_id, name FROM sandbox_users WHERE uri = $1", uri
        )
        return None if row is None else SandboxUser(**dict(row))

    async def party(self, uri: str) -> tuple[OlmParty, int]:
        """The user's Olm account and the version it was read at (for `save_party_in`).

        A cached account is taken out of the cache: the caller owns it (it mutates it) and it
        comes back only once saved. If the save fails, the next read restores the pickle.
        """
        hit = self._parties.pop(uri, None)
        if hit is not None:
            version = await self.store.fetchval(
                "SELECT olm_version FROM sandbox_users WHERE uri = $1", uri
            )
            if version == hit[1]:  # nobody (no replica) saved the account since
                return hit
        row = await self.store.fetchrow(
            "SELECT olm_state, olm_version FROM sandbox_users WHERE uri = $1", uri
        )
        assert row is not None
        return OlmParty.from_pickle(bytes(row["olm_state"]), self.key), int(row["olm_version"])

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
            current = await tx.fetchval(_LOCK_SQL[self.store.dialect], uri)
        except Exception as exc:
            if is_lock_not_available(exc):
                raise StaleAccount(uri) from None
            raise
        if current != version:
            raise StaleAccount(uri)
        await tx.execute(
            "UPDATE sandbox_users SET olm_state = $1, olm_version = $2 WHERE uri = $3",
            party.pickle(self.key),
            version + 1,
            uri,
        )
        tx.on_commit(lambda: self._remember(uri, party, version + 1))

    async def claim(self, uri: str) -> tuple[ClaimedBundle | None, int]:
        """Claim one one-time key (or give the fallback); also return how many are left."""

        async def unit(tx: Tx) -> tuple[ClaimedBundle | None, int]:
            user = await tx.fetchrow(
                "SELECT identity_key, signing_key FROM sandbox_users WHERE uri = $1", uri
            )
            if user is None:
                return None, 0
            otk = await tx.fetchrow(_CLAIM_SQL[self.store.dialect], uri)
            fallback = None
            if otk is not None:
                await tx.execute(
                    "UPDATE sandbox_one_time_keys SET claimed_at = $1 "
                    "WHERE user_uri = $2 AND key_id = $3",
                    now_ms(), uri, otk["key_id"],
                )  # fmt: skip
            else:
                fallback = await tx.fetchrow(
                    "SELECT key_id, key, signature FROM sandbox_fallback_keys WHERE user_uri = $1",
                    uri,
                )
            left = await tx.fetchval(
                "SELECT COUNT(*) FROM sandbox_one_time_keys "
                "WHERE user_uri = $1 AND claimed_at IS NULL",
                uri,
            )
            return ClaimedBundle(
                user=uri,
                identity_key=user["identity_key"],
                signing_key=user["signing_key"],
                one_time_key=None if otk is None else SignedOneTimeKey(**dict(otk)),
                fallback_key=None if fallback is None else SignedOneTimeKey(**dict(fallback)),
            ), int(left)

        return await self.store.write("sandbox_key_claim", unit)

    async def replenish(self, uri: str) -> None:
        """Publish fresh one-time keys, as a client does when its server says it is low."""
        party, version = await self.party(uri)
        bundle = party.key_bundle(ONE_TIME_KEYS)

        async def unit(tx: Tx) -> None:
            await self.save_party_in(tx, uri, party, version)
            await tx.executemany(
                "INSERT INTO sandbox_one_time_keys (user_uri, key_id, key, signature) "
                "VALUES ($1, $2, $3, $4)",
                [(uri, kid, k.key, k.signature) for kid, k in bundle.one_time_keys.items()],
            )

        await self.store.write("sandbox_keys_replenish", unit)

    async def has_received(self, uri: str, message_id: str) -> bool:
        found = await self.store.fetchval(
            "SELECT 1 FROM sandbox_inbox WHERE user_uri = $1 AND message_id = $2", uri, message_id
        )
        return found is not None

    async def deliver_in(self, tx: Tx, uri: str, message_id: str, payload: dict[str, Any]) -> None:
        """Put a decrypted webhook envelope in the user's inbox (once per message id)."""
        await tx.execute(
            "INSERT INTO sandbox_inbox (user_uri, message_id, received_at, sealed) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT (user_uri, message_id) DO NOTHING",
            uri, message_id, now_ms(), self.seal(payload),
        )  # fmt: skip

    async def inbox(self, uri: str, limit: int = 1000) -> list[dict[str, Any]]:
        rows = await self.store.fetch(
            "SELECT received_at, sealed FROM sandbox_inbox WHERE user_uri = $1 "
            "ORDER BY seq LIMIT $2",
            uri,
            limit,
        )
        return [
            {"received_at": row["received_at"], "payload": self.unseal(bytes(row["sealed"]))}
            for row in rows
        ]
