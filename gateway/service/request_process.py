"""The request process after intake (DESIGN §4.3): plan, live, extensions, comments, disputes.

received -> approved (eligible; InteropRequests.decide) -> planned (committed dates for the next
update and for going live) -> live; or rejected with reasons. The requester may comment on a
plan and dispute a plan or a rejection within the comment window; a dispute is reviewed within
its own deadline, and the review either upholds the step (back to it) or revises it (a rejection
goes back to be decided again, a plan to be drawn again). Art. 7(6) extensions move the Art.
7(5) deadline with a reason. Every step is a row of onboarding_transitions: who, when, why.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from gateway.clock import now_ms
from gateway.config import Config
from gateway.errors import Conflict, ValidationFailed
from gateway.service.tenancy import not_found
from gateway.service.working_days import WorkingDays, day_start_ms
from gateway.store import Store, Tx
from gateway.store import interop_requests as requests
from gateway.store.interop_requests import InteropRequestRecord, RequestStatus
from gateway.store.transitions import record_transition

Text = Annotated[str, Meta(min_length=1, max_length=2000)]
Day = Annotated[str, Meta(pattern=r"^\d{4}-\d{2}-\d{2}$")]
_DAY_MS = 86_400_000


class PlanIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    next_update: Day
    live: Day
    note: Annotated[str, Meta(max_length=2000)] | None = None


class ExtendIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    until: Day
    reason: Text


class LiveIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    note: Annotated[str, Meta(max_length=2000)] | None = None


class ReviewIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    outcome: Literal["upheld", "revised"]
    reason: Text


class CommentIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    text: Text


class DisputeIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    reason: Text


def _day(value: str, field: str) -> int:
    try:
        return day_start_ms(value)
    except ValueError:
        raise ValidationFailed("Not a date (YYYY-MM-DD).", field=field) from None


Step = Callable[[Tx, InteropRequestRecord, int], Awaitable[None]]


class RequestProcess:
    """The steps of a request after its eligibility decision, each one write unit."""

    def __init__(self, store: Store, config: Config, *, clock: Callable[[], int] = now_ms) -> None:
        self._store = store
        self._requests = config.requests
        self._days = WorkingDays(config.requests.holidays)
        self._clock = clock

    @property
    def working_days(self) -> WorkingDays:
        return self._days

    async def _step(self, name: str, request_id: str, step: Step) -> None:
        now = self._clock()

        async def unit(tx: Tx) -> None:
            request = await requests.get_request(tx, request_id)
            if request is None:
                raise not_found("interop request")
            await step(tx, request, now)

        await self._store.write(f"interop_request_{name}", unit)

    @staticmethod
    def _require(request: InteropRequestRecord, *allowed: RequestStatus) -> None:
        if request.status not in allowed:
            raise Conflict(
                f"This request is {request.status}; this step needs it {' or '.join(allowed)}."
            )

    async def plan(self, request_id: str, body: PlanIn, *, actor: str = "admin") -> None:
        """Commit to dates for the next update and for going live; opens the comment window."""
        next_update = _day(body.next_update, "$.next_update")
        live = _day(body.live, "$.live")
        note = (body.note or "").strip() or None

        async def step(tx: Tx, request: InteropRequestRecord, now: int) -> None:
            self._require(request, "approved", "planned")
            if next_update < now - _DAY_MS:
                raise ValidationFailed(
                    "The next update cannot be in the past.", field="$.next_update"
                )
            if live < next_update:
                raise ValidationFailed("Going live comes after the next update.", field="$.live")
            if live > request.effective_deadline_at:
                raise ValidationFailed(
                    "Going live must be within the Art. 7(5) deadline; extend it first "
                    "(Art. 7(6)).",
                    field="$.live",
                )
            when = f"next update {body.next_update}, live {body.live}"
            await requests.update_phase(
                tx,
                request_id,
                "planned",
                planned_at=now,
                plan_next_update_at=next_update,
                plan_live_at=live,
                comment_due_at=self._days.add(now, self._requests.comment_working_days),
            )
            await record_transition(
                tx, kind="request", subject=request_id, before=request.status, after="planned",
                actor=actor, reason=f"{when}. {note}" if note else when, at=now,
                event="replan" if request.status == "planned" else None,
            )  # fmt: skip

        await self._step("planned", request_id, step)

    async def go_live(self, request_id: str, body: LiveIn, *, actor: str = "admin") -> None:
        """The requested functionalities work: the request is done."""

        async def step(tx: Tx, request: InteropRequestRecord, now: int) -> None:
            self._require(request, "approved", "planned")
            await requests.update_phase(tx, request_id, "live", live_at=now)
            await record_transition(
                tx, kind="request", subject=request_id, before=request.status, after="live",
                actor=actor, reason=(body.note or "").strip() or None, at=now,
            )  # fmt: skip

        await self._step("live", request_id, step)

    async def extend(self, request_id: str, body: ExtendIn, *, actor: str = "admin") -> None:
        """Move the Art. 7(5) deadline later (Art. 7(6)), with a reason."""
        until = _day(body.until, "$.until") + _DAY_MS - 1  # the end of that day

        async def step(tx: Tx, request: InteropRequestRecord, now: int) -> None:
            self._require(request, "received", "approved", "planned", "disputed")
            if until <= request.effective_deadline_at:
                raise ValidationFailed("An extension moves the deadline later.", field="$.until")
            await requests.update_phase(tx, request_id, request.status, extended_to=until)
            await record_transition(
                tx, kind="request", subject=request_id, before=request.status,
                after=request.status, actor=actor,
                reason=f"deadline extended to {body.until} (Art. 7(6)): {body.reason.strip()}",
                at=now, event="extension",
            )  # fmt: skip

        await self._step("extended", request_id, step)

    def _window_open(self, request: InteropRequestRecord, now: int) -> bool:
        if request.status == "planned":
            return request.comment_due_at is not None and now <= request.comment_due_at
        decided = request.decided_at or request.received_at
        return now <= self._days.add(decided, self._requests.comment_working_days)

    async def comment(self, request_id: str, body: CommentIn) -> None:
        """The requester's comment on the plan, within the comment window."""

        async def step(tx: Tx, request: InteropRequestRecord, now: int) -> None:
            self._require(request, "planned")
            if not self._window_open(request, now):
                raise Conflict("The window for comments on this plan has closed.")
            await record_transition(
                tx, kind="request", subject=request_id, before="planned", after="planned",
                actor="requester", reason=body.text.strip(), at=now, event="comment",
            )  # fmt: skip

        await self._step("commented", request_id, step)

    async def dispute(self, request_id: str, body: DisputeIn) -> None:
        """The requester disputes a rejection or a plan; a review is due within its deadline."""

        async def step(tx: Tx, request: InteropRequestRecord, now: int) -> None:
            self._require(request, "rejected", "planned")
            if not self._window_open(request, now):
                raise Conflict("The window for disputing this step has closed.")
            await requests.update_phase(
                tx,
                request_id,
                "disputed",
                disputed_from=request.status,
                review_due_at=self._days.add(now, self._requests.review_working_days),
                reviewed_at=None,
            )
            await record_transition(
                tx, kind="request", subject=request_id, before=request.status, after="disputed",
                actor="requester", reason=body.reason.strip(), at=now,
            )  # fmt: skip

        await self._step("disputed", request_id, step)

    async def review(self, request_id: str, body: ReviewIn, *, actor: str = "admin") -> None:
        """Decide a dispute: uphold the disputed step, or revise it (decide or plan again)."""

        async def step(tx: Tx, request: InteropRequestRecord, now: int) -> None:
            self._require(request, "disputed")
            rejected = request.disputed_from == "rejected"
            back: RequestStatus = "rejected" if rejected else "planned"
            if body.outcome == "revised":
                back = "received" if rejected else "approved"
            await requests.update_phase(tx, request_id, back, reviewed_at=now)
            await record_transition(
                tx, kind="request", subject=request_id, before="disputed", after=back,
                actor=actor, reason=body.reason.strip(), at=now, event=f"review_{body.outcome}",
            )  # fmt: skip

        await self._step("reviewed", request_id, step)
