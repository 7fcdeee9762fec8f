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
from gateway.config import RequestsConfig
from gateway.service.tenancy import not_found
from gateway.service.working_days import WorkingDays
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
    plan_next_update_at: int | None
    plan_live_at: int | None
    deadlines: list[Deadline]
    next_deadline: Deadline | None
    log: list[LogEntry]


def _role(actor: str) -> str:
    return "requester" if actor == "requester" else "gatekeeper"


def deadlines_of(
    request: InteropRequestRecord, now: int, days: WorkingDays, config: RequestsConfig
) -> list[Deadline]:
    """The request's deadlines, each with when it was met (None while open)."""

    def deadline(
        name: str, label: str, due: int, met: int | None, *, window: bool = False
    ) -> Deadline:
        # A window (the requester's) is never overdue, it closes.
        overdue = not window and met is None and now > due
        return Deadline(name=name, label=label, due_at=due, met_at=met, overdue=overdue)

    eligibility_due = request.eligibility_due_at or days.add(
        request.received_at, config.eligibility_working_days
    )
    decided = request.decided_at if request.status != "received" else None
    found = [deadline("eligibility", "Eligibility decision", eligibility_due, decided)]
    if request.plan_live_at is not None:
        found.append(
            deadline("go_live", "Going live (plan)", request.plan_live_at, request.live_at)
        )
    if request.comment_due_at is not None:
        due = request.comment_due_at
        closed = due if now > due else None
        found.append(deadline("comments", "Requester's comments", due, closed, window=True))
    if request.review_due_at is not None:
        found.append(
            deadline("review", "Review of the dispute", request.review_due_at, request.reviewed_at)
        )
    final = request.live_at if request.status == "live" else None
    if request.status == "rejected":
        final = request.decided_at
    label = "Operational (Art. 7(5))" + (", extended (Art. 7(6))" if request.extended_to else "")
    found.append(deadline("art_7_5", label, request.effective_deadline_at, final))
    return found


def _event(t: Transition) -> str:
    if t.event is None:
        return t.to_status
    return t.event.replace("_", " ")


def _log(transitions: list[Transition], *, with_text: bool) -> list[LogEntry]:
    return [
        LogEntry(
            at=t.at,
            actor=_role(t.actor),
            event=_event(t),
            text=t.reason if with_text else None,
        )
        for t in transitions
    ]


class RequestTracker:
    """Read-only views of requests for the portal; the requester's view needs its token."""

    def __init__(
        self, db: Reader, config: RequestsConfig, *, clock: Callable[[], int] = now_ms
    ) -> None:
        self._db = db
        self._config = config
        self._days = WorkingDays(config.holidays)
        self._clock = clock

    async def _view(self, request: InteropRequestRecord, *, private: bool) -> TrackedRequest:
        now = self._clock()
        deadlines = deadlines_of(request, now, self._days, self._config)
        open_ = [d for d in deadlines if d.met_at is None]
        transitions = await transitions_of(self._db, "request", request.id)
        return TrackedRequest(
            id=request.id,
            organisation=CONFIDENTIAL
            if request.confidential and not private
            else request.organisation,
            services=request.services,
            functionalities=request.functionalities,
            phase=request.status,
            received_at=request.received_at,
            plan_next_update_at=request.plan_next_update_at,
            plan_live_at=request.plan_live_at,
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

    async def requester_view(self, request_id: str) -> TrackedRequest:
        """One request with the full texts of its log; the caller checked the status token."""
        request = await requests.get_request(self._db, request_id)
        if request is None:
            raise not_found("interop request")
        return await self._view(request, private=True)
