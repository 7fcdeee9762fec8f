"""The sandbox platforms' tables (`sandbox_`): simulated users, their Olm accounts, keys, inboxes.

Olm accounts and inbox payloads arrive here already sealed under the sandbox key
(`gateway/platforms/sandbox_state.py`): these functions store and return opaque bytes.
On PostgreSQL a write unit never waits for another replica's transaction: the account row is
locked NOWAIT (`lock_olm_version` raises what `is_lock_not_available` recognises) and a one-time
key another replica is claiming is skipped (SKIP LOCKED), never handed out twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import msgspec

from gateway.store.base import Reader, Tx


class SandboxUser(msgspec.Struct, frozen=True, kw_only=True):
    """A simulated user of one of the sandbox services."""

    uri: str
    service: str
    native_id: str
    name: str


class StoredKey(NamedTuple):
    """A published one-time or fallback key and its signature."""

    key_id: str
    key: str
    signature: str


class UserKeys(NamedTuple):
    """A user's long-term public keys."""

    identity_key: str
    signing_key: str


class InboxEntry(NamedTuple):
    """One received message, sealed under the sandbox key."""

    received_at: int
    sealed: bytes


USER_EXISTS_SQL = "SELECT 1 FROM sandbox_users WHERE uri = $1"
INSERT_USER_SQL = (
    "INSERT INTO sandbox_users (uri, service, native_id, name, identity_key, signing_key, "
    "olm_state, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
)
INSERT_ONE_TIME_KEY_SQL = (
    "INSERT INTO sandbox_one_time_keys (user_uri, key_id, key, signature) VALUES ($1, $2, $3, $4)"
)
INSERT_FALLBACK_KEY_SQL = (
    "INSERT INTO sandbox_fallback_keys (user_uri, key_id, key, signature) VALUES ($1, $2, $3, $4)"
)
USER_SQL = "SELECT uri, service, native_id, name FROM sandbox_users WHERE uri = $1"
OLM_VERSION_SQL = "SELECT olm_version FROM sandbox_users WHERE uri = $1"
LOCK_OLM_VERSION_SQL = {
    "sqlite": OLM_VERSION_SQL,
    "postgres": OLM_VERSION_SQL + " FOR UPDATE NOWAIT",
}
OLM_ACCOUNT_SQL = "SELECT olm_state, olm_version FROM sandbox_users WHERE uri = $1"
SAVE_OLM_ACCOUNT_SQL = "UPDATE sandbox_users SET olm_state = $1, olm_version = $2 WHERE uri = $3"
USER_KEYS_SQL = "SELECT identity_key, signing_key FROM sandbox_users WHERE uri = $1"
_NEXT_KEY = (
    "SELECT key_id, key, signature FROM sandbox_one_time_keys "
    "WHERE user_uri = $1 AND claimed_at IS NULL ORDER BY key_id LIMIT 1"
)
NEXT_KEY_SQL = {"sqlite": _NEXT_KEY, "postgres": _NEXT_KEY + " FOR UPDATE SKIP LOCKED"}
MARK_CLAIMED_SQL = (
    "UPDATE sandbox_one_time_keys SET claimed_at = $1 WHERE user_uri = $2 AND key_id = $3"
)
FALLBACK_KEY_SQL = "SELECT key_id, key, signature FROM sandbox_fallback_keys WHERE user_uri = $1"
UNCLAIMED_COUNT_SQL = (
    "SELECT COUNT(*) FROM sandbox_one_time_keys WHERE user_uri = $1 AND claimed_at IS NULL"
)
HAS_RECEIVED_SQL = "SELECT 1 FROM sandbox_inbox WHERE user_uri = $1 AND message_id = $2"
DELIVER_SQL = (
    "INSERT INTO sandbox_inbox (user_uri, message_id, received_at, sealed) "
    "VALUES ($1, $2, $3, $4) ON CONFLICT (user_uri, message_id) DO NOTHING"
)
INBOX_SQL = (
    "SELECT received_at, sealed FROM sandbox_inbox WHERE user_uri = $1 ORDER BY seq LIMIT $2"
)


async def user_exists(db: Reader, uri: str) -> bool:
    """Whether the sandbox has a user of this uri."""
    return await db.fetchval(USER_EXISTS_SQL, uri) is not None


async def insert_user(
    tx: Tx, user: SandboxUser, keys: UserKeys, olm_state: bytes, created_at: int
) -> None:
    """Store a new user with its keys and sealed Olm account (at version 0)."""
    await tx.execute(
        INSERT_USER_SQL,
        user.uri, user.service, user.native_id, user.name, keys.identity_key, keys.signing_key,
        olm_state, created_at,
    )  # fmt: skip


async def publish_one_time_keys(tx: Tx, uri: str, keys: Iterable[StoredKey]) -> None:
    """Add unclaimed one-time keys of the user."""
    await tx.executemany(INSERT_ONE_TIME_KEY_SQL, [(uri, *key) for key in keys])


async def publish_fallback_key(tx: Tx, uri: str, key: StoredKey) -> None:
    """Set the user's fallback key (handed out when no one-time key is left)."""
    await tx.execute(INSERT_FALLBACK_KEY_SQL, uri, *key)


async def user(db: Reader, uri: str) -> SandboxUser | None:
    """The user of this uri, or None."""
    row = await db.fetchrow(USER_SQL, uri)
    return None if row is None else SandboxUser(**dict(row))


async def olm_version(db: Reader, uri: str) -> int | None:
    """The version the user's Olm account was last saved as, or None without such a user."""
    value = await db.fetchval(OLM_VERSION_SQL, uri)
    return None if value is None else int(value)


async def olm_account(db: Reader, uri: str) -> tuple[bytes, int] | None:
    """The user's sealed Olm account and its version, or None."""
    row = await db.fetchrow(OLM_ACCOUNT_SQL, uri)
    return None if row is None else (bytes(row["olm_state"]), int(row["olm_version"]))


async def lock_olm_version(tx: Tx, uri: str) -> int | None:
    """The account's version, its row locked for this unit (NOWAIT on PostgreSQL: raises at
    once if another transaction holds it; see `is_lock_not_available`)."""
    value = await tx.fetchval(LOCK_OLM_VERSION_SQL[tx.dialect], uri)
    return None if value is None else int(value)


async def save_olm_account(tx: Tx, uri: str, olm_state: bytes, version: int) -> None:
    """Store the user's sealed Olm account as `version`."""
    await tx.execute(SAVE_OLM_ACCOUNT_SQL, olm_state, version, uri)


async def user_keys(db: Reader, uri: str) -> UserKeys | None:
    """The user's identity and signing keys, or None without such a user."""
    row = await db.fetchrow(USER_KEYS_SQL, uri)
    return None if row is None else UserKeys(row["identity_key"], row["signing_key"])


async def claim_one_time_key(tx: Tx, uri: str, at: int) -> StoredKey | None:
    """Mark one unclaimed one-time key of the user claimed at `at` and return it; None when
    none is left (a key another replica is claiming is skipped, never waited for)."""
    row = await tx.fetchrow(NEXT_KEY_SQL[tx.dialect], uri)
    if row is None:
        return None
    await tx.execute(MARK_CLAIMED_SQL, at, uri, row["key_id"])
    return StoredKey(row["key_id"], row["key"], row["signature"])


async def fallback_key(db: Reader, uri: str) -> StoredKey | None:
    """The user's fallback key, or None."""
    row = await db.fetchrow(FALLBACK_KEY_SQL, uri)
    return None if row is None else StoredKey(row["key_id"], row["key"], row["signature"])


async def unclaimed_key_count(db: Reader, uri: str) -> int:
    """How many one-time keys of the user are still unclaimed."""
    return int(await db.fetchval(UNCLAIMED_COUNT_SQL, uri))


async def has_received(db: Reader, uri: str, message_id: str) -> bool:
    """Whether the user's inbox holds the message."""
    return await db.fetchval(HAS_RECEIVED_SQL, uri, message_id) is not None


async def deliver(tx: Tx, uri: str, message_id: str, received_at: int, sealed: bytes) -> None:
    """Put a sealed message in the user's inbox, once per message id (a repeat is ignored)."""
    await tx.execute(DELIVER_SQL, uri, message_id, received_at, sealed)


async def inbox(db: Reader, uri: str, limit: int) -> list[InboxEntry]:
    """The first `limit` messages of the user's inbox, in the order they arrived."""
    rows = await db.fetch(INBOX_SQL, uri, limit)
    return [InboxEntry(row["received_at"], bytes(row["sealed"])) for row in rows]


# -- groups (migration 0011): Megolm sessions pickled under the sandbox key, opaque here ------

GROUP_ITEM_SEEN_SQL = "SELECT 1 FROM sandbox_group_items WHERE user_uri = $1 AND item_id = $2"
MARK_GROUP_ITEM_SQL = (
    "INSERT INTO sandbox_group_items (user_uri, item_id, received_at) VALUES ($1, $2, $3) "
    "ON CONFLICT (user_uri, item_id) DO NOTHING"
)
SAVE_INBOUND_SQL = (
    "INSERT INTO sandbox_group_inbound (user_uri, group_uri, session_id, pickle, created_at) "
    "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_uri, group_uri, session_id) DO NOTHING"
)
INBOUND_SQL = (
    "SELECT pickle FROM sandbox_group_inbound "
    "WHERE user_uri = $1 AND group_uri = $2 AND session_id = $3"
)
OUTBOUND_SQL = (
    "SELECT epoch, session_id, pickle FROM sandbox_group_outbound "
    "WHERE user_uri = $1 AND group_uri = $2"
)
SAVE_OUTBOUND_SQL = (
    "INSERT INTO sandbox_group_outbound (user_uri, group_uri, epoch, session_id, pickle) "
    "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_uri, group_uri) DO UPDATE SET "
    "epoch = excluded.epoch, session_id = excluded.session_id, pickle = excluded.pickle"
)
SAVE_VIEW_SQL = (
    "INSERT INTO sandbox_group_views (user_uri, group_uri, epoch, sealed) VALUES ($1, $2, $3, $4) "
    "ON CONFLICT (user_uri, group_uri) DO UPDATE SET epoch = excluded.epoch, "
    "sealed = excluded.sealed WHERE sandbox_group_views.epoch <= excluded.epoch"
)
VIEW_SQL = "SELECT epoch, sealed FROM sandbox_group_views WHERE user_uri = $1 AND group_uri = $2"


class OutboundSession(NamedTuple):
    """A member's sending session in a group: the epoch it was shared in and its pickle."""

    epoch: int
    session_id: str
    pickle: str


async def group_item_seen(db: Reader, uri: str, item_id: str) -> bool:
    """Whether the member took in this group item already."""
    return await db.fetchval(GROUP_ITEM_SEEN_SQL, uri, item_id) is not None


async def mark_group_item(tx: Tx, uri: str, item_id: str, at: int) -> None:
    """Record that the member took in the group item (a repeat is ignored)."""
    await tx.execute(MARK_GROUP_ITEM_SQL, uri, item_id, at)


async def save_inbound_session(
    tx: Tx, uri: str, group: str, session_id: str, pickle: str, at: int
) -> None:
    """Keep a received room key's session (the first one of a session id stays)."""
    await tx.execute(SAVE_INBOUND_SQL, uri, group, session_id, pickle, at)


async def inbound_session(db: Reader, uri: str, group: str, session_id: str) -> str | None:
    """The pickle of the member's inbound session, or None."""
    value = await db.fetchval(INBOUND_SQL, uri, group, session_id)
    return None if value is None else str(value)


async def outbound_session(db: Reader, uri: str, group: str) -> OutboundSession | None:
    """The member's current sending session in the group, or None."""
    row = await db.fetchrow(OUTBOUND_SQL, uri, group)
    if row is None:
        return None
    return OutboundSession(int(row["epoch"]), row["session_id"], row["pickle"])


async def save_outbound_session(tx: Tx, uri: str, group: str, session: OutboundSession) -> None:
    """Set (or advance) the member's sending session in the group."""
    await tx.execute(SAVE_OUTBOUND_SQL, uri, group, session.epoch, session.session_id,
                     session.pickle)  # fmt: skip


async def save_group_view(tx: Tx, uri: str, group: str, epoch: int, sealed: bytes) -> None:
    """Remember the group as the member heard of it at `epoch` (an older epoch never wins)."""
    await tx.execute(SAVE_VIEW_SQL, uri, group, epoch, sealed)


async def group_view(db: Reader, uri: str, group: str) -> tuple[int, bytes] | None:
    """The epoch and sealed members of the member's view of the group, or None."""
    row = await db.fetchrow(VIEW_SQL, uri, group)
    return None if row is None else (int(row["epoch"]), bytes(row["sealed"]))
