"""Interop requests (Art. 7(5)): what was asked, by whom, and what was decided."""

from __future__ import annotations

import json
from typing import Any, Literal

import msgspec

from gateway.store.base import Reader, Row, Tx

RequestStatus = Literal["received", "approved", "planned", "live", "rejected", "disputed"]

_COLUMNS = (
    "id, status, organisation, contact_email, services, functionalities, jwks, webhook_url, "
    "received_at, deadline_at, decided_at, reason, client_id, confidential, eligibility_due_at, "
    "planned_at, plan_next_update_at, plan_live_at, comment_due_at, live_at, extended_to, "
    "disputed_from, review_due_at, reviewed_at"
)
# The phase fields, each set by one step of the process (see gateway.service.request_process).
_PHASE_FIELDS = (
    "eligibility_due_at",
    "planned_at",
    "plan_next_update_at",
    "plan_live_at",
    "comment_due_at",
    "live_at",
    "extended_to",
    "disputed_from",
    "review_due_at",
    "reviewed_at",
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
    confidential: bool = False
    eligibility_due_at: int | None = None
    planned_at: int | None = None
    plan_next_update_at: int | None = None
    plan_live_at: int | None = None
    comment_due_at: int | None = None
    live_at: int | None = None
    extended_to: int | None = None
    disputed_from: str | None = None
    review_due_at: int | None = None
    reviewed_at: int | None = None

    @property
    def effective_deadline_at(self) -> int:
        """The Art. 7(5) deadline, as extended under Art. 7(6)."""
        return self.extended_to or self.deadline_at


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
        confidential=bool(row["confidential"]),
        **{name: row[name] for name in _PHASE_FIELDS},
    )


async def add_request(tx: Tx, request: InteropRequestRecord, *, status_token_hash: str) -> None:
    """Record a request as received."""
    await tx.execute(
        "INSERT INTO interop_requests (id, organisation, contact_email, services, "
        "functionalities, jwks, webhook_url, status, status_token_hash, received_at, "
        "deadline_at, confidential, eligibility_due_at) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
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
        int(request.confidential),
        request.eligibility_due_at,
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


async def update_phase(
    tx: Tx, request_id: str, status: RequestStatus, **fields: int | str | None
) -> None:
    """Move the request to `status`, setting the named phase fields (others stay)."""
    unknown = set(fields) - set(_PHASE_FIELDS)
    if unknown:
        raise ValueError(f"not phase fields: {sorted(unknown)}")
    names = list(fields)
    assignments = "".join(f", {name} = ${i + 3}" for i, name in enumerate(names))
    await tx.execute(
        f"UPDATE interop_requests SET status = $1{assignments} WHERE id = $2",
        status,
        request_id,
        *(fields[name] for name in names),
    )
