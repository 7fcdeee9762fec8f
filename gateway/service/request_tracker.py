"""What people see of interop requests: the public tracker and the requester's own log.

The public view names the organisation (unless it asked for confidentiality), what was asked,
the phase, the deadlines and which steps happened when, by which role; never a contact address,
a key, or the free text of a reason or comment, which may carry personal data. The requester's
view adds those texts.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from gateway.clock import now_ms
from gateway.service.tenancy import not_found
from gateway.store import Reader
from gateway.store import interop_requests as requests
from gateway.store.interop_requests import InteropRequestRecord
from gateway.store.transitions import Transition, transitions_of

CONFIDENTIAL = "(confidential)"


class Deadline(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    label: str
    due_at: int
    met_at: int | None
    overdue: bool


class LogEntry(msgspec.Struct, frozen=True, kw_only=True):
    at: int
    actor: str
    event: str
    text: str | None = None


class TrackedRequest(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    organisation: str
    services: list[str]
    functionalities: list[str]
    phase: str
    received_at: int
    deadlines: list[Deadline]
    next_deadline: Deadline | None
    log: list[LogEntry]


def _role(actor: str) -> str:
    return "requester" if actor == "requester" else "gatekeeper"


def deadlines_of(request: InteropRequestRecord, now: int) -> list[Deadline]:
    """The request's deadlines, each with when it was met (None while open)."""
    final = request.decided_at if request.status != "received" else None
    return [
        Deadline(
            name="decision",
            label="Decision (Art. 7(5))",
            due_at=request.deadline_at,
            met_at=final,
            overdue=final is None and now > request.deadline_at,
        )
    ]


def _log(transitions: list[Transition], *, with_text: bool) -> list[LogEntry]:
    return [
        LogEntry(
            at=t.at,
            actor=_role(t.actor),
            event=t.to_status,
            text=t.reason if with_text else None,
        )
        for t in transitions
    ]


class RequestTracker:
    """Read-only views of requests for the portal; the requester's view needs its token."""

    def __init__(self, db: Reader, *, clock: Callable[[], int] = now_ms) -> None:
        self._db = db
        self._clock = clock

    async def _view(self, request: InteropRequestRecord, *, private: bool) -> TrackedRequest:
        now = self._clock()
        deadlines = deadlines_of(request, now)
        open_ = [d for d in deadlines if d.met_at is None]
        transitions = await transitions_of(self._db, "request", request.id)
        return TrackedRequest(
            id=request.id,
            organisation=request.organisation,
            services=request.services,
            functionalities=request.functionalities,
            phase=request.status,
            received_at=request.received_at,
            deadlines=deadlines,
            next_deadline=min(open_, key=lambda d: d.due_at) if open_ else None,
            log=_log(transitions, with_text=private),
        )

    async def public_list(self, *, limit: int = 200) -> list[TrackedRequest]:
        """Every request (newest first), as the public may see it."""
        found = await requests.list_requests(self._db, None, limit=limit)
        found.sort(key=lambda r: (r.received_at, r.id), reverse=True)
        return [await self._view(r, private=False) for r in found]

    async def public_view(self, request_id: str) -> TrackedRequest:
        """One request as the public may see it."""
        request = await requests.get_request(self._db, request_id)
        if request is None:
            raise not_found("interop request")
        return await self._view(request, private=False)
