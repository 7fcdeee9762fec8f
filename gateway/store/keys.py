"""The key directory's tables (DESIGN §4.4): identities, one-time and fallback keys, contacts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gateway.store.base import Reader, Tx


@dataclass(frozen=True, slots=True)
class Identity:
    """A third-party user's long-term keys and the provider that owns the user."""

    client_id: str
    identity_key: str
    signing_key: str


@dataclass(frozen=True, slots=True)
class SignedKey:
    """A one-time or fallback key with its Ed25519 signature."""

    key_id: str
    key: str
    signature: str


IDENTITY = "SELECT client_id, identity_key, signing_key FROM e2ee_identities WHERE user_uri = $1"
INSERT_IDENTITY = (
    "INSERT INTO e2ee_identities (user_uri, client_id, identity_key, signing_key, updated_at) "
    "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_uri) DO UPDATE SET "
    "identity_key = excluded.identity_key, signing_key = excluded.signing_key, "
    "updated_at = excluded.updated_at"
)
COUNT = "SELECT count(*) FROM e2ee_one_time_keys WHERE user_uri = $1"
# The oldest key goes first. On PostgreSQL a key another transaction is claiming is skipped
# rather than waited for, so concurrent claims (other replicas) each take a different key.
CLAIM = {
    "sqlite": (
        "DELETE FROM e2ee_one_time_keys WHERE user_uri = $1 AND key_id = ("
        "SELECT key_id FROM e2ee_one_time_keys WHERE user_uri = $1 "
        "ORDER BY uploaded_at, key_id LIMIT 1) RETURNING key_id, key, signature"
    ),
    "postgres": (
        "DELETE FROM e2ee_one_time_keys WHERE user_uri = $1 AND key_id = ("
        "SELECT key_id FROM e2ee_one_time_keys WHERE user_uri = $1 "
        "ORDER BY uploaded_at, key_id LIMIT 1 FOR UPDATE SKIP LOCKED) "
        "RETURNING key_id, key, signature"
    ),
}
INSERT_ONE_TIME = (
    "INSERT INTO e2ee_one_time_keys (user_uri, key_id, key, signature, uploaded_at) "
    "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_uri, key_id) DO NOTHING"
)
FALLBACK = "SELECT key_id, key, signature FROM e2ee_fallback_keys WHERE user_uri = $1"
UPSERT_FALLBACK = (
    "INSERT INTO e2ee_fallback_keys (user_uri, key_id, key, signature, uploaded_at) "
    "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_uri) DO UPDATE "
    "SET key_id = excluded.key_id, key = excluded.key, "
    "signature = excluded.signature, uploaded_at = excluded.uploaded_at"
)
CONTACT = (
    "INSERT INTO e2ee_contacts (user_uri, client_id, last_seen_at) VALUES ($1, $2, $3) "
    "ON CONFLICT (user_uri, client_id) DO UPDATE SET last_seen_at = excluded.last_seen_at"
)
# A claim that loses a race (another transaction took the key first) tries again.
CLAIM_ATTEMPTS = 8


async def identity(db: Reader, user: str) -> Identity | None:
    """`user`'s identity and signing keys and owner, or None when none were published."""
    row = await db.fetchrow(IDENTITY, user)
    if row is None:
        return None
    return Identity(row["client_id"], row["identity_key"], row["signing_key"])


async def put_identity(
    tx: Tx, user: str, client_id: str, identity_key: str, signing_key: str, *, at: int
) -> None:
    """Create or replace `user`'s identity and signing keys."""
    await tx.execute(INSERT_IDENTITY, user, client_id, identity_key, signing_key, at)


async def drop_keys(tx: Tx, user: str) -> None:
    """Delete all of `user`'s one-time keys and its fallback key."""
    await tx.execute("DELETE FROM e2ee_one_time_keys WHERE user_uri = $1", user)
    await tx.execute("DELETE FROM e2ee_fallback_keys WHERE user_uri = $1", user)


async def one_time_key_count(db: Reader, user: str) -> int:
    """How many unclaimed one-time keys `user` has."""
    return int(await db.fetchval(COUNT, user) or 0)


async def add_one_time_keys(tx: Tx, user: str, keys: Sequence[SignedKey], *, at: int) -> None:
    """Store one-time keys of `user`; a key id already stored keeps its key."""
    if keys:
        rows = [(user, k.key_id, k.key, k.signature, at) for k in keys]
        await tx.executemany(INSERT_ONE_TIME, rows)


async def claim_one_time_key(tx: Tx, user: str) -> SignedKey | None:
    """Delete and return one key of `user`, atomically; None when the stock is empty."""
    for _ in range(CLAIM_ATTEMPTS):
        row = await tx.fetchrow(CLAIM[tx.dialect], user)
        if row is not None:
            return SignedKey(row["key_id"], row["key"], row["signature"])
        if not await one_time_key_count(tx, user):
            return None
    return None


async def put_fallback_key(tx: Tx, user: str, key: SignedKey, *, at: int) -> None:
    """Set `user`'s fallback key, replacing any earlier one."""
    await tx.execute(UPSERT_FALLBACK, user, key.key_id, key.key, key.signature, at)


async def fallback_key(db: Reader, user: str) -> SignedKey | None:
    """`user`'s fallback key, or None."""
    row = await db.fetchrow(FALLBACK, user)
    return None if row is None else SignedKey(row["key_id"], row["key"], row["signature"])


async def record_contact(tx: Tx, user: str, client_id: str, *, at: int) -> None:
    """Remember that provider `client_id` talks to `user` (told when its identity changes)."""
    await tx.execute(CONTACT, user, client_id, at)


async def contacts(db: Reader, user: str) -> list[str]:
    """The providers that talked to `user`, sorted."""
    rows = await db.fetch("SELECT client_id FROM e2ee_contacts WHERE user_uri = $1", user)
    return sorted({r["client_id"] for r in rows})
