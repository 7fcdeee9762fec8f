"""Relayed messages: envelopes, their idempotency keys and their payloads until delivered.

Owns the table `relay_messages` (the only module writing it). One row per accepted message,
receipt or typing signal, in either direction; (client_id, client_msg_id) is the idempotency key
of a provider's submission and `digest` the SHA-256 of its canonical body. The payload is sealed
by the service (gateway/service/payload_seal.py) and set to NULL once the message is finished:
only the envelope stays (Art. 7(8)).
"""

from __future__ import annotations

import msgspec

from gateway.store.base import Reader, Tx


class KnownMessage(msgspec.Struct, frozen=True, kw_only=True):
    """An idempotency key already used: the gateway id it got and the body digest."""

    id: str
    digest: str


class Envelope(msgspec.Struct, frozen=True, kw_only=True):
    """What is recorded of a message whichever way it goes."""

    id: str
    client_id: str
    client_msg_id: str
    digest: str
    kind: str
    service: str
    sender: str
    recipient: str
    sent_at: int
    size: int


async def find_by_key(db: Reader, client_id: str, client_msg_id: str) -> KnownMessage | None:
    """The message a provider submitted under `client_msg_id`, if any."""
    row = await db.fetchrow(
        "SELECT id, digest FROM relay_messages WHERE client_id = $1 AND client_msg_id = $2",
        client_id,
        client_msg_id,
    )
    return None if row is None else KnownMessage(id=str(row["id"]), digest=str(row["digest"]))


async def add_outbound(tx: Tx, envelope: Envelope, payload: str, at: int) -> KnownMessage | None:
    """Record a provider's message to a platform user, `accepted` with its sealed payload.

    None when recorded; when its idempotency key is already used, nothing is written and the
    message that holds the key is returned (one statement on the usual path, not a look-up
    and an insert).
    """
    added = await tx.execute(ADD_OUTBOUND_SQL, *outbound_args(envelope, payload, at))
    return None if added else await holder(tx, envelope)


# $1-$12 as `outbound_args` gives them; another module may wrap it (outbox.accept_outbound).
ADD_OUTBOUND_SQL = (
    "INSERT INTO relay_messages (id, client_id, client_msg_id, digest, direction, kind, "
    "service, sender, recipient, sent_at, accepted_at, size, status, payload) "
    "VALUES ($1, $2, $3, $4, 'outbound', $5, $6, $7, $8, $9, $10, $11, 'accepted', $12) "
    "ON CONFLICT (client_id, client_msg_id) DO NOTHING"
)


def outbound_args(e: Envelope, payload: str, at: int) -> tuple[object, ...]:
    """The parameters of ADD_OUTBOUND_SQL."""
    return (
        e.id, e.client_id, e.client_msg_id, e.digest, e.kind, e.service, e.sender, e.recipient,
        e.sent_at, at, e.size, payload,
    )  # fmt: skip


async def holder(tx: Tx, envelope: Envelope) -> KnownMessage:
    """The message holding `envelope`'s idempotency key (an insert just met it)."""
    known = await find_by_key(tx, envelope.client_id, envelope.client_msg_id)
    assert known is not None, "the insert met this key, in this transaction"
    return known


async def add_group_item(tx: Tx, envelope: Envelope, payload: str | None, at: int) -> None:
    """Record a group item (`recipient` the group): `accepted` with its sealed payload until
    its platform members have it, or at once `delivered` when it went to providers only."""
    e = envelope
    status, finished = ("accepted", None) if payload is not None else ("delivered", at)
    await tx.execute(
        "INSERT INTO relay_messages (id, client_id, client_msg_id, digest, direction, kind, "
        "service, sender, recipient, sent_at, accepted_at, size, status, finished_at, payload) "
        "VALUES ($1, $2, $3, $4, 'group', $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        e.id, e.client_id, e.client_msg_id, e.digest, e.kind, e.service, e.sender, e.recipient,
        e.sent_at, at, e.size, status, finished, payload,
    )  # fmt: skip


async def add_inbound(tx: Tx, envelope: Envelope, at: int) -> KnownMessage | None:
    """Record a platform user's message to a provider: delivered once it is an event.

    None when recorded; the message already recorded under its key (a platform's retry of
    the same webhook) when there is one, and then nothing is written.
    """
    e = envelope
    added = await tx.execute(
        "INSERT INTO relay_messages (id, client_id, client_msg_id, digest, direction, kind, "
        "service, sender, recipient, sent_at, accepted_at, size, status, finished_at) "
        "VALUES ($1, $2, $3, $4, 'inbound', $5, $6, $7, $8, $9, $10, $11, 'delivered', $10) "
        "ON CONFLICT (client_id, client_msg_id) DO NOTHING",
        e.id, e.client_id, e.client_msg_id, e.digest, e.kind, e.service, e.sender, e.recipient,
        e.sent_at, at, e.size,
    )  # fmt: skip
    return None if added else await holder(tx, e)


async def client_msg_id_of(db: Reader, gateway_id: str, sender: str) -> str | None:
    """The provider's own id of the message `gateway_id` that `sender` sent, if any."""
    value = await db.fetchval(
        "SELECT client_msg_id FROM relay_messages WHERE id = $1 AND sender = $2",
        gateway_id,
        sender,
    )
    return None if value is None else str(value)


async def finish(tx: Tx, message_id: str, status: str, at: int) -> None:
    """Set the final status and drop the payload: only the envelope stays."""
    await tx.execute(FINISH_SQL.format(ids="$3"), status, at, message_id)


# `ids`: an SQL expression of the message ids (a parameter, a sub-select); $1 status, $2 at.
FINISH_SQL = (
    "UPDATE relay_messages SET status = $1, finished_at = $2, payload = NULL WHERE id IN ({ids})"
)
