"""The `http` platform's id maps (`platform_` tables): the native ids the real services know
third-party users and relayed messages by, so that their webhooks find the way back."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.store.base import Reader, Tx

REMEMBER_USER_SQL = (
    "INSERT INTO platform_user_ids (service, native_id, uri) VALUES ($1, $2, $3) "
    "ON CONFLICT (service, native_id) DO NOTHING"
)
USER_URI_SQL = "SELECT uri FROM platform_user_ids WHERE service = $1 AND native_id = $2"
REMEMBER_MESSAGE_SQL = (
    "INSERT INTO platform_message_ids (service, native_id, message_id, created_at) "
    "VALUES ($1, $2, $3, $4) ON CONFLICT (service, native_id) DO NOTHING"
)
MESSAGE_ID_SQL = (
    "SELECT message_id FROM platform_message_ids WHERE service = $1 AND native_id IN ($2, $3)"
)


async def remember_user(tx: Tx, service: str, native_id: str, uri: str) -> None:
    """Record that `native_id` on `service` is the user `uri` (the first mapping stays)."""
    await tx.execute(REMEMBER_USER_SQL, service, native_id, uri)


async def user_uri(db: Reader, service: str, native_id: str) -> str | None:
    """The uri of the user `service` knows as `native_id`, or None."""
    value = await db.fetchval(USER_URI_SQL, service, native_id)
    return None if value is None else str(value)


async def remember_message(
    tx: Tx, service: str, native_id: str, message_id: str, created_at: int
) -> None:
    """Record that `service` knows the gateway message `message_id` as `native_id`."""
    await tx.execute(REMEMBER_MESSAGE_SQL, service, native_id, message_id, created_at)


async def remember_messages(
    tx: Tx, records: Sequence[tuple[str, str, str]], created_at: int
) -> None:
    """`remember_message` for each `(service, native_id, message_id)`, in one statement."""
    if records:
        await tx.executemany(REMEMBER_MESSAGE_SQL, [(s, n, m, created_at) for s, n, m in records])


async def message_id(db: Reader, service: str, native_id: str, alias: str) -> str | None:
    """The gateway message id `service` knows as `native_id` or as `alias` (another spelling
    of the same id), or None."""
    value = await db.fetchval(MESSAGE_ID_SQL, service, native_id, alias)
    return None if value is None else str(value)
