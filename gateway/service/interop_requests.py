"""Interop requests (Art. 7(5)): intake, the requester's status, the admin's decision."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
import uuid
from collections.abc import Callable
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from gateway.config import Config
from gateway.errors import Conflict, ValidationFailed
from gateway.service import scopes as scope_names
from gateway.service.client_keys import check_jwks
from gateway.service.intake_checks import check_email, check_webhook_url
from gateway.service.providers import new_webhook_secret, record_transition
from gateway.service.tenancy import not_found
from gateway.store import Store, Tx

RequestStatus = Literal["received", "approved", "rejected"]
REQUEST_STATUSES: tuple[str, ...] = ("received", "approved", "rejected")
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


class InteropRequestCreated(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    status: RequestStatus
    received_at: int
    deadline_at: int
    status_token: str


class Transition(msgspec.Struct, frozen=True, kw_only=True):
    from_status: str | None
    to_status: str
    actor: str
    reason: str | None
    at: int


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


class Decision(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    decision: Literal["approve", "reject"]
    reason: Annotated[str, Meta(max_length=2000)] | None = None


_REQUEST_COLUMNS = (
    "id, status, organisation, contact_email, services, functionalities, webhook_url, "
    "received_at, deadline_at, decided_at, reason, client_id"
)


def _token_hash(token: str) -> str:
    # A 256-bit random token needs no slow hash; SHA-256 keeps a database leak harmless.
    return hashlib.sha256(token.encode()).hexdigest()


def _client_id_for(organisation: str) -> str:
    """A readable, URI-safe client id (it becomes the host of mimi://<client_id>/u/...)."""
    slug = re.sub(r"[^a-z0-9]+", "-", organisation.lower()).strip("-")[:24].strip("-")
    return f"{slug or 'provider'}-{secrets.token_hex(4)}"


def _admin_view(row: Any) -> InteropRequestAdminView:
    return InteropRequestAdminView(
        id=row["id"],
        status=row["status"],
        organisation=row["organisation"],
        contact_email=row["contact_email"],
        services=json.loads(row["services"]),
        functionalities=json.loads(row["functionalities"]),
        webhook_url=row["webhook_url"],
        received_at=row["received_at"],
        deadline_at=row["deadline_at"],
        decided_at=row["decided_at"],
        reason=row["reason"],
        client_id=row["client_id"],
    )


class InteropRequests:
    """The request lifecycle: received -> approved (creates a provider) | rejected."""

    def __init__(self, store: Store, config: Config, *, clock: Callable[[], float] = time.time):
        self._store = store
        self._config = config
        self._clock = clock

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _check(self, body: InteropRequestIn) -> tuple[list[str], list[str]]:
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
            check_webhook_url(body.webhook_url, field="$.webhook_url")
        return services, functionalities or offered

    async def submit(self, body: InteropRequestIn) -> InteropRequestCreated:
        """Record a request; its deadline is `request_deadline_days` after receipt."""
        services, functionalities = self._check(body)
        keys = check_jwks(msgspec.to_builtins(body.jwks))
        request_id = str(uuid.uuid4())
        status_token = secrets.token_urlsafe(32)
        received = self._now_ms()
        deadline = received + self._config.request_deadline_days * _DAY_MS

        async def unit(tx: Tx) -> None:
            await tx.execute(
                "INSERT INTO interop_requests (id, organisation, contact_email, services, "
                "functionalities, jwks, webhook_url, status, status_token_hash, received_at, "
                "deadline_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 'received', $8, $9, $10)",
                request_id,
                body.organisation.strip(),
                body.contact_email,
                json.dumps(services),
                json.dumps(functionalities),
                json.dumps({"keys": keys}),
                body.webhook_url,
                _token_hash(status_token),
                received,
                deadline,
            )
            await record_transition(
                tx,
                kind="request",
                subject=request_id,
                before=None,
                after="received",
                actor="requester",
                reason=None,
                at=received,
            )

        await self._store.write("interop_request_received", unit)
        return InteropRequestCreated(
            id=request_id,
            status="received",
            received_at=received,
            deadline_at=deadline,
            status_token=status_token,
        )

    async def status(self, request_id: str, status_token: str) -> InteropRequestStatus:
        """The requester's view; a wrong token answers like an unknown id."""
        stored = await self._store.fetchval(
            "SELECT status_token_hash FROM interop_requests WHERE id = $1", request_id
        )
        if stored is None or not hmac.compare_digest(stored, _token_hash(status_token)):
            raise not_found("interop request")
        return await self._status(request_id, reveal_secret=True)

    async def status_for_provider(self, request_id: str, client_id: str) -> InteropRequestStatus:
        """The request a provider came from, seen with its access token; others are not found."""
        owner = await self._store.fetchval(
            "SELECT client_id FROM interop_requests WHERE id = $1", request_id
        )
        if owner is None or owner != client_id:
            raise not_found("interop request")
        return await self._status(request_id, reveal_secret=False)

    async def _status(self, request_id: str, *, reveal_secret: bool) -> InteropRequestStatus:
        row = await self._store.fetchrow(
            f"SELECT {_REQUEST_COLUMNS} FROM interop_requests WHERE id = $1", request_id
        )
        if row is None:
            raise not_found("interop request")
        view = _admin_view(row)
        granted: list[str] | None = None
        secret: str | None = None
        if view.client_id is not None:
            provider = await self._store.fetchrow(
                "SELECT scopes FROM providers WHERE client_id = $1", view.client_id
            )
            granted = json.loads(provider["scopes"]) if provider else None
            if reveal_secret:
                secret = await self._take_webhook_secret(view.client_id)
        transitions = await self._store.fetch(
            "SELECT from_state, to_state, actor, reason, at FROM onboarding_transitions "
            "WHERE subject_kind = 'request' AND subject_id = $1 ORDER BY seq",
            request_id,
        )
        return InteropRequestStatus(
            id=view.id,
            status=view.status,
            organisation=view.organisation,
            services=view.services,
            functionalities=view.functionalities,
            received_at=view.received_at,
            deadline_at=view.deadline_at,
            decided_at=view.decided_at,
            reason=view.reason,
            client_id=view.client_id,
            scopes=granted,
            webhook_secret=secret,
            transitions=[
                Transition(
                    from_status=t["from_state"],
                    to_status=t["to_state"],
                    actor=t["actor"],
                    reason=t["reason"],
                    at=t["at"],
                )
                for t in transitions
            ],
        )

    async def _take_webhook_secret(self, client_id: str) -> str | None:
        """The webhook secret, once: marked shown in the same write that reads it."""
        now = self._now_ms()

        async def unit(tx: Tx) -> str | None:
            changed = await tx.execute(
                "UPDATE providers SET webhook_secret_shown_at = $1 "
                "WHERE client_id = $2 AND webhook_secret IS NOT NULL "
                "AND webhook_secret_shown_at IS NULL",
                now,
                client_id,
            )
            if not changed:
                return None
            secret: str | None = await tx.fetchval(
                "SELECT webhook_secret FROM providers WHERE client_id = $1", client_id
            )
            return secret

        return await self._store.write("webhook_secret_shown", unit)

    async def list(
        self, status: RequestStatus | None = None, *, limit: int = 100
    ) -> list[InteropRequestAdminView]:
        """Requests for the admin, nearest deadline first."""
        where = "" if status is None else "WHERE status = $2 "
        args: list[Any] = [limit] if status is None else [limit, status]
        rows = await self._store.fetch(
            f"SELECT {_REQUEST_COLUMNS} FROM interop_requests {where}"
            "ORDER BY deadline_at, id LIMIT $1",
            *args,
        )
        return [_admin_view(row) for row in rows]

    async def decide(
        self, request_id: str, decision: Decision, *, actor: str = "admin"
    ) -> InteropRequestAdminView:
        """Approve (creating the provider) or reject (a reason is required) a received request."""
        reason = (decision.reason or "").strip() or None
        if decision.decision == "reject" and reason is None:
            raise ValidationFailed("A rejection needs a reason.", field="$.reason")
        now = self._now_ms()
        to_status = "approved" if decision.decision == "approve" else "rejected"

        async def unit(tx: Tx) -> None:
            row = await tx.fetchrow(
                "SELECT status, organisation, services, functionalities, jwks, webhook_url "
                "FROM interop_requests WHERE id = $1",
                request_id,
            )
            if row is None:
                raise not_found("interop request")
            if row["status"] != "received":
                raise Conflict(f"This request was already {row['status']}.")
            client_id = None
            if to_status == "approved":
                client_id = await _create_provider(tx, request_id, row, now, actor)
            await tx.execute(
                "UPDATE interop_requests SET status = $1, decided_at = $2, reason = $3, "
                "client_id = $4 WHERE id = $5",
                to_status,
                now,
                reason,
                client_id,
                request_id,
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
        row = await self._store.fetchrow(
            f"SELECT {_REQUEST_COLUMNS} FROM interop_requests WHERE id = $1", request_id
        )
        return _admin_view(row)


async def _create_provider(tx: Tx, request_id: str, row: Any, now: int, actor: str) -> str:
    client_id = _client_id_for(row["organisation"])
    granted = scope_names.ordered(scope_names.scopes_for(json.loads(row["functionalities"])))
    await tx.execute(
        "INSERT INTO providers (client_id, request_id, organisation, jwks, webhook_url, "
        "webhook_secret, state, services, functionalities, scopes, created_at, updated_at) "
        "VALUES ($1, $2, $3, $4, $5, $6, 'active', $7, $8, $9, $10, $10)",
        client_id,
        request_id,
        row["organisation"],
        row["jwks"],
        row["webhook_url"],
        new_webhook_secret() if row["webhook_url"] else None,
        row["services"],
        row["functionalities"],
        json.dumps(granted),
        now,
    )
    await record_transition(
        tx,
        kind="provider",
        subject=client_id,
        before=None,
        after="active",
        actor=actor,
        reason=f"approved request {request_id}",
        at=now,
    )
    return client_id
