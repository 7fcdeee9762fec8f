"""Interop requests (Art. 7(5)): intake, the requester's status, the admin's decision."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from collections.abc import Callable
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from gateway.clock import now_ms
from gateway.config import Config
from gateway.errors import Conflict, ValidationFailed
from gateway.service import scopes as scope_names
from gateway.service.client_keys import check_jwks
from gateway.service.egress import Egress
from gateway.service.intake_checks import check_email, check_webhook_url
from gateway.service.providers import new_webhook_secret
from gateway.service.request_tracker import Deadline, deadlines_of
from gateway.service.tenancy import not_found
from gateway.service.working_days import WorkingDays
from gateway.store import Store, Tx
from gateway.store import interop_requests as requests
from gateway.store import providers as stored_providers
from gateway.store.interop_requests import InteropRequestRecord, RequestStatus
from gateway.store.transitions import Transition, record_transition, transitions_of

__all__ = [
    "REQUEST_STATUSES",
    "Decision",
    "InteropRequestAdminView",
    "InteropRequestCreated",
    "InteropRequestIn",
    "InteropRequestStatus",
    "InteropRequests",
    "RequestStatus",
    "Transition",
]

REQUEST_STATUSES: tuple[str, ...] = (
    "received",
    "approved",
    "planned",
    "live",
    "rejected",
    "disputed",
)
_DAY_MS = 86_400_000


class Jwks(msgspec.Struct, frozen=True, kw_only=True):
    # Other JWK Set members (RFC 7517 §5) are allowed and ignored.
    keys: list[dict[str, Any]]


class InteropRequestIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    organisation: Annotated[str, Meta(min_length=1, max_length=200)]
    contact_email: Annotated[str, Meta(min_length=3, max_length=254)]
    services: Annotated[list[str], Meta(min_length=1, max_length=10)]
    functionalities: Annotated[list[str], Meta(max_length=50)]
    jwks: Jwks
    webhook_url: Annotated[str, Meta(max_length=2000)] | None = None
    # Keep the organisation's name off the public tracker.
    confidential: bool = False


class InteropRequestCreated(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    status: RequestStatus
    received_at: int
    deadline_at: int
    status_token: str
    eligibility_due_at: int


class InteropRequestStatus(msgspec.Struct, frozen=True, kw_only=True):
    """What the requester sees; `webhook_secret` only in the first answer after approval."""

    id: str
    status: RequestStatus
    organisation: str
    services: list[str]
    functionalities: list[str]
    received_at: int
    deadline_at: int
    decided_at: int | None
    reason: str | None
    client_id: str | None
    scopes: list[str] | None
    webhook_secret: str | None
    transitions: list[Transition]
    plan: Plan | None
    extended_to: int | None
    deadlines: list[Deadline]


class Plan(msgspec.Struct, frozen=True, kw_only=True):
    """The committed dates of a plan and the end of the requester's comment window."""

    planned_at: int
    next_update_at: int
    live_at: int
    comment_due_at: int | None


def plan_of(request: InteropRequestRecord) -> Plan | None:
    if request.planned_at is None or request.plan_next_update_at is None:
        return None
    return Plan(
        planned_at=request.planned_at,
        next_update_at=request.plan_next_update_at,
        live_at=request.plan_live_at or request.plan_next_update_at,
        comment_due_at=request.comment_due_at,
    )


class InteropRequestAdminView(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    status: RequestStatus
    organisation: str
    contact_email: str
    services: list[str]
    functionalities: list[str]
    webhook_url: str | None
    received_at: int
    deadline_at: int
    decided_at: int | None
    reason: str | None
    client_id: str | None
    confidential: bool
    plan: Plan | None
    extended_to: int | None
    live_at: int | None
    deadlines: list[Deadline]
    # In the answer about one request only (not in lists).
    transitions: list[Transition] | None = None


class Decision(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    decision: Literal["approve", "reject"]
    reason: Annotated[str, Meta(max_length=2000)] | None = None


def _token_hash(token: str) -> str:
    # A 256-bit random token needs no slow hash; SHA-256 keeps a database leak harmless.
    return hashlib.sha256(token.encode()).hexdigest()


def _client_id_for(organisation: str) -> str:
    """A readable, URI-safe client id (it becomes the host of mimi://<client_id>/u/...)."""
    slug = re.sub(r"[^a-z0-9]+", "-", organisation.lower()).strip("-")[:24].strip("-")
    return f"{slug or 'provider'}-{secrets.token_hex(4)}"


def _admin_view(
    record: InteropRequestRecord, deadlines: list[Deadline]
) -> InteropRequestAdminView:
    return InteropRequestAdminView(
        id=record.id,
        status=record.status,
        organisation=record.organisation,
        contact_email=record.contact_email,
        services=record.services,
        functionalities=record.functionalities,
        webhook_url=record.webhook_url,
        received_at=record.received_at,
        deadline_at=record.deadline_at,
        decided_at=record.decided_at,
        reason=record.reason,
        client_id=record.client_id,
        confidential=record.confidential,
        plan=plan_of(record),
        extended_to=record.extended_to,
        live_at=record.live_at,
        deadlines=deadlines,
    )


class InteropRequests:
    """The request lifecycle: received -> approved (creates a provider) | rejected."""

    def __init__(
        self,
        store: Store,
        config: Config,
        egress: Egress,
        *,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self._store = store
        self._config = config
        self._egress = egress
        self._clock = clock
        self._days = WorkingDays(config.requests.holidays)

    def deadlines(self, request: InteropRequestRecord) -> list[Deadline]:
        """The request's deadlines now."""
        return deadlines_of(request, self._clock(), self._days, self._config.requests)

    async def _check(self, body: InteropRequestIn) -> tuple[list[str], list[str]]:
        enabled = {n: s for n, s in self._config.services.items() if s.enabled}
        services: list[str] = []
        for i, name in enumerate(body.services):
            if name not in enabled:
                raise ValidationFailed(
                    f"Unknown or disabled service {name!r}; offered: {', '.join(enabled)}.",
                    field=f"$.services[{i}]",
                )
            if name in services:
                raise ValidationFailed("Each service only once.", field=f"$.services[{i}]")
            services.append(name)
        # In the order of the offer; a request naming none asks for all of them.
        offered = list(dict.fromkeys(f for n in services for f in enabled[n].functionalities))
        functionalities: list[str] = []
        for i, name in enumerate(body.functionalities):
            if name not in offered:
                raise ValidationFailed(
                    f"Functionality {name!r} is not in the reference offer of these services.",
                    field=f"$.functionalities[{i}]",
                )
            if name not in functionalities:
                functionalities.append(name)
        if not body.organisation.strip():
            raise ValidationFailed("The organisation needs a name.", field="$.organisation")
        check_email(body.contact_email, field="$.contact_email")
        if body.webhook_url is not None:
            await check_webhook_url(body.webhook_url, field="$.webhook_url", egress=self._egress)
        return services, functionalities or offered

    async def submit(self, body: InteropRequestIn) -> InteropRequestCreated:
        """Record a request; its deadline is `request_deadline_days` after receipt."""
        services, functionalities = await self._check(body)
        keys = check_jwks(msgspec.to_builtins(body.jwks))
        status_token = secrets.token_urlsafe(32)
        received = self._clock()
        request = InteropRequestRecord(
            id=str(uuid.uuid4()),
            status="received",
            organisation=body.organisation.strip(),
            contact_email=body.contact_email,
            services=services,
            functionalities=functionalities,
            jwks=keys,
            webhook_url=body.webhook_url,
            received_at=received,
            deadline_at=received + self._config.request_deadline_days * _DAY_MS,
            confidential=body.confidential,
            eligibility_due_at=self._days.add(
                received, self._config.requests.eligibility_working_days
            ),
        )

        async def unit(tx: Tx) -> None:
            await requests.add_request(tx, request, status_token_hash=_token_hash(status_token))
            await record_transition(
                tx,
                kind="request",
                subject=request.id,
                before=None,
                after="received",
                actor="requester",
                reason=None,
                at=received,
            )

        await self._store.write("interop_request_received", unit)
        return InteropRequestCreated(
            id=request.id,
            status="received",
            received_at=request.received_at,
            deadline_at=request.deadline_at,
            status_token=status_token,
            eligibility_due_at=request.eligibility_due_at or received,
        )

    async def authorize(self, request_id: str, status_token: str) -> None:
        """Pass when `status_token` is the request's; a wrong token answers like an unknown id."""
        stored = await requests.status_token_hash(self._store, request_id)
        if stored is None or not hmac.compare_digest(stored, _token_hash(status_token)):
            raise not_found("interop request")

    async def status(
        self, request_id: str, status_token: str, *, reveal_secret: bool = True
    ) -> InteropRequestStatus:
        """The requester's view (with the webhook secret, once, unless told not to)."""
        await self.authorize(request_id, status_token)
        return await self._status(request_id, reveal_secret=reveal_secret)

    async def status_for_provider(self, request_id: str, client_id: str) -> InteropRequestStatus:
        """The request a provider came from, seen with its access token; others are not found."""
        owner = await requests.request_client_id(self._store, request_id)
        if owner is None or owner != client_id:
            raise not_found("interop request")
        return await self._status(request_id, reveal_secret=False)

    async def _status(self, request_id: str, *, reveal_secret: bool) -> InteropRequestStatus:
        request = await requests.get_request(self._store, request_id)
        if request is None:
            raise not_found("interop request")
        granted: list[str] | None = None
        secret: str | None = None
        if request.client_id is not None:
            granted = await stored_providers.provider_scopes(self._store, request.client_id)
            if reveal_secret:
                secret = await self._take_webhook_secret(request.client_id)
        return InteropRequestStatus(
            id=request.id,
            status=request.status,
            organisation=request.organisation,
            services=request.services,
            functionalities=request.functionalities,
            received_at=request.received_at,
            deadline_at=request.deadline_at,
            decided_at=request.decided_at,
            reason=request.reason,
            client_id=request.client_id,
            scopes=granted,
            webhook_secret=secret,
            transitions=await transitions_of(self._store, "request", request_id),
            plan=plan_of(request),
            extended_to=request.extended_to,
            deadlines=self.deadlines(request),
        )

    async def _take_webhook_secret(self, client_id: str) -> str | None:
        """The webhook secret, once: marked shown in the same write that reads it."""
        now = self._clock()

        async def unit(tx: Tx) -> str | None:
            return await stored_providers.take_unshown_webhook_secret(tx, client_id, at=now)

        return await self._store.write("webhook_secret_shown", unit)

    async def list(
        self, status: RequestStatus | None = None, *, limit: int = 100
    ) -> list[InteropRequestAdminView]:
        """Requests for the admin, nearest deadline first."""
        found = await requests.list_requests(self._store, status, limit=limit)
        return [_admin_view(request, self.deadlines(request)) for request in found]

    async def admin_view(self, request_id: str) -> InteropRequestAdminView:
        """One request, as the admin sees it."""
        request = await requests.get_request(self._store, request_id)
        if request is None:
            raise not_found("interop request")
        view = _admin_view(request, self.deadlines(request))
        history = await transitions_of(self._store, "request", request_id)
        return msgspec.structs.replace(view, transitions=history)

    async def decide(
        self, request_id: str, decision: Decision, *, actor: str = "admin"
    ) -> InteropRequestAdminView:
        """Approve (creating the provider) or reject (a reason is required) a received request."""
        reason = (decision.reason or "").strip() or None
        if decision.decision == "reject" and reason is None:
            raise ValidationFailed("A rejection needs a reason.", field="$.reason")
        now = self._clock()
        to_status: RequestStatus = "approved" if decision.decision == "approve" else "rejected"

        async def unit(tx: Tx) -> None:
            request = await requests.get_request(tx, request_id)
            if request is None:
                raise not_found("interop request")
            if request.status != "received":
                raise Conflict(f"This request was already {request.status}.")
            client_id = request.client_id
            if to_status == "approved" and client_id is None:
                client_id = await _create_provider(tx, request, now, actor)
            await requests.decide_request(
                tx, request_id, to_status, reason=reason, client_id=client_id, at=now
            )
            await record_transition(
                tx,
                kind="request",
                subject=request_id,
                before="received",
                after=to_status,
                actor=actor,
                reason=reason,
                at=now,
            )

        await self._store.write(f"interop_request_{to_status}", unit)
        return await self.admin_view(request_id)


async def _create_provider(tx: Tx, request: InteropRequestRecord, now: int, actor: str) -> str:
    client_id = _client_id_for(request.organisation)
    await stored_providers.add_provider(
        tx,
        client_id=client_id,
        request_id=request.id,
        organisation=request.organisation,
        jwks=request.jwks,
        webhook_url=request.webhook_url,
        webhook_secret=new_webhook_secret() if request.webhook_url else None,
        services=request.services,
        functionalities=request.functionalities,
        scopes=scope_names.ordered(scope_names.scopes_for(request.functionalities)),
        at=now,
    )
    await record_transition(
        tx,
        kind="provider",
        subject=client_id,
        before=None,
        after="active",
        actor=actor,
        reason=f"approved request {request.id}",
        at=now,
    )
    return client_id
