"""Interop requests (Art. 7(5)): what was asked, by whom, and what was decided."""

from __future__ import annotations

import json
from typing import Any, Literal

import msgspec

from gateway.store.base import Reader, Row, Tx

RequestStatus = Literal["received", "approved", "rejected"]

_COLUMNS = (
    "id, status, organisation, contact_email, services, functionalities, jwks, webhook_url, "
    "received_at, deadline_at, decided_at, reason, client_id"
)


class InteropRequestRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A stored interop request (without its status token, of which only a hash is kept)."""

    id: str
    status: RequestStatus
    organisation: str
    contact_email: str
    services: list[str]
    functionalities: list[str]
    jwks: list[dict[str, Any]]
    webhook_url: str | None
    received_at: int
    deadline_at: int
    decided_at: int | None = None
    reason: str | None = None
    client_id: str | None = None


def _record(row: Row) -> InteropRequestRecord:
    return InteropRequestRecord(
        id=row["id"],
        status=row["status"],
        organisation=row["organisation"],
        contact_email=row["contact_email"],
        services=json.loads(row["services"]),
        functionalities=json.loads(row["functionalities"]),
        jwks=json.loads(row["jwks"])["keys"],
        webhook_url=row["webhook_url"],
        received_at=row["received_at"],
        deadline_at=row["deadline_at"],
        decided_at=row["decided_at"],
        reason=row["reason"],
        client_id=row["client_id"],
    )


async def add_request(tx: Tx, request: InteropRequestRecord, *, status_token_hash: str) -> None:
    """Record a request as received."""
    await tx.execute(
        "INSERT INTO interop_requests (id, organisation, contact_email, services, "
        "functionalities, jwks, webhook_url, status, status_token_hash, received_at, "
        "deadline_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        request.id,
        request.organisation,
        request.contact_email,
        json.dumps(request.services),
        json.dumps(request.functionalities),
        json.dumps({"keys": request.jwks}),
        request.webhook_url,
        request.status,
        status_token_hash,
        request.received_at,
        request.deadline_at,
    )


async def get_request(db: Reader, request_id: str) -> InteropRequestRecord | None:
    """The request; None when unknown."""
    row = await db.fetchrow(f"SELECT {_COLUMNS} FROM interop_requests WHERE id = $1", request_id)
    return None if row is None else _record(row)


async def status_token_hash(db: Reader, request_id: str) -> str | None:
    """The hash of the request's status token; None when the request is unknown."""
    stored: str | None = await db.fetchval(
        "SELECT status_token_hash FROM interop_requests WHERE id = $1", request_id
    )
    return stored


async def request_client_id(db: Reader, request_id: str) -> str | None:
    """The provider an approved request created; None when unknown or not approved."""
    client_id: str | None = await db.fetchval(
        "SELECT client_id FROM interop_requests WHERE id = $1", request_id
    )
    return client_id


async def list_requests(
    db: Reader, status: RequestStatus | None = None, *, limit: int
) -> list[InteropRequestRecord]:
    """Requests (optionally in one status), nearest deadline first."""
    where = "" if status is None else "WHERE status = $2 "
    args: list[Any] = [limit] if status is None else [limit, status]
    rows = await db.fetch(
        f"SELECT {_COLUMNS} FROM interop_requests {where}ORDER BY deadline_at, id LIMIT $1",
        *args,
    )
    return [_record(row) for row in rows]


async def decide_request(
    tx: Tx,
    request_id: str,
    status: RequestStatus,
    *,
    reason: str | None,
    client_id: str | None,
    at: int,
) -> None:
    """Record the decision on a request (and the provider an approval created)."""
    await tx.execute(
        "UPDATE interop_requests SET status = $1, decided_at = $2, reason = $3, "
        "client_id = $4 WHERE id = $5",
        status,
        at,
        reason,
        client_id,
        request_id,
    )
