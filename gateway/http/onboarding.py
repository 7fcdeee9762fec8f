"""Interop requests, provider administration and the provider's own view (DESIGN §4.3)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, cast, get_args

import msgspec
from aiohttp import web
from msgspec import Meta

from gateway.errors import Unauthorized, ValidationFailed
from gateway.http.app_keys import ACCESS_TOKENS, INTEROP_REQUESTS, PROVIDERS, REQUEST_PROCESS
from gateway.http.auth import authenticate_provider, current_provider, public, requires_scope
from gateway.http.body import decode_json, json_response
from gateway.http.guards import bearer_token, require_admin
from gateway.service.interop_requests import (
    REQUEST_STATUSES,
    Decision,
    InteropRequestIn,
    RequestStatus,
)
from gateway.service.providers import ProviderState
from gateway.service.request_process import (
    CommentIn,
    DisputeIn,
    ExtendIn,
    LiveIn,
    PlanIn,
    RequestProcess,
    ReviewIn,
)
from gateway.service.scopes import ordered

routes = web.RouteTableDef()
ProcessStep = Callable[[RequestProcess, str, Any], Awaitable[None]]


class ReasonIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    reason: Annotated[str, Meta(max_length=2000)] | None = None


class MeOut(msgspec.Struct, frozen=True, kw_only=True):
    client_id: str
    organisation: str
    state: str
    services: list[str]
    functionalities: list[str]
    granted_scopes: list[str]
    token_scopes: list[str]
    webhook_url: str | None


def _choice(request: web.Request, name: str, allowed: tuple[str, ...]) -> str | None:
    value = request.query.get(name)
    if value is not None and value not in allowed:
        raise ValidationFailed(f"{name} must be one of: {', '.join(allowed)}.", field=name)
    return value


def _limit(request: web.Request, default: int = 100, maximum: int = 500) -> int:
    raw = request.query.get("limit", str(default))
    if not raw.isdigit() or not 1 <= int(raw) <= maximum:
        raise ValidationFailed(f"limit must be an integer from 1 to {maximum}.", field="limit")
    return int(raw)


async def _reason(request: web.Request) -> str | None:
    if not request.body_exists:
        return None
    return (await decode_json(request, ReasonIn)).reason


# -- requester ------------------------------------------------------------------------------


@routes.post("/v1/interop-requests")
@public(limit="intake")
async def submit_request(request: web.Request) -> web.Response:
    """Receive an interop request (Art. 7(5)); answer with its id, deadline and status token."""
    body = await decode_json(request, InteropRequestIn)
    created = await request.app[INTEROP_REQUESTS].submit(body)
    return json_response(
        created,
        status=201,
        headers={"Location": f"/v1/interop-requests/{created.id}", "Cache-Control": "no-store"},
    )


@routes.get("/v1/interop-requests/{id}")
@public()
async def request_status(request: web.Request) -> web.Response:
    """The request's status, for the holder of its status token or of the provider's token."""
    token = bearer_token(request)
    if token is None:
        raise Unauthorized(
            "Send the status token of the request (or the provider's access token) as Bearer.",
            headers={"WWW-Authenticate": 'Bearer realm="interop-request"'},
        )
    service = request.app[INTEROP_REQUESTS]
    request_id = request.match_info["id"]
    if token.count(".") == 2:  # a JWT: the approved provider's access token
        provider = await authenticate_provider(request, token)
        assert provider.client_id is not None
        status = await service.status_for_provider(request_id, provider.client_id)
    else:
        status = await service.status(request_id, token)
    return json_response(status, headers={"Cache-Control": "no-store"})


def _status_token(request: web.Request) -> str:
    token = bearer_token(request)
    if token is None:
        raise Unauthorized(
            "Send the status token of the request as Bearer.",
            headers={"WWW-Authenticate": 'Bearer realm="interop-request"'},
        )
    return token


# No per-IP bucket: these answer only to the holder of a 256-bit status token.
async def _requester_step(
    request: web.Request,
    step: Callable[[RequestProcess, str, Any], Awaitable[None]],
    body_type: Any,
) -> web.Response:
    token, request_id = _status_token(request), request.match_info["id"]
    service = request.app[INTEROP_REQUESTS]
    await service.authorize(request_id, token)
    await step(request.app[REQUEST_PROCESS], request_id, await decode_json(request, body_type))
    status = await service.status(request_id, token, reveal_secret=False)
    return json_response(status, headers={"Cache-Control": "no-store"})


# No per-IP bucket: these answer only to the holder of a 256-bit status token.
@routes.post("/v1/interop-requests/{id}/comments")
@public()
async def comment_on_plan(request: web.Request) -> web.Response:
    """The requester's comment on the plan, within the comment window."""
    return await _requester_step(request, RequestProcess.comment, CommentIn)


@routes.post("/v1/interop-requests/{id}/dispute")
@public()
async def dispute_step(request: web.Request) -> web.Response:
    """The requester disputes a rejection or a plan; a review follows within its deadline."""
    return await _requester_step(request, RequestProcess.dispute, DisputeIn)


# -- provider -------------------------------------------------------------------------------


@routes.get("/v1/me")
@requires_scope()
async def me(request: web.Request) -> web.Response:
    """The calling provider: its id, state, grants and the scopes of this token."""
    principal = current_provider(request)
    assert principal.client_id is not None
    provider = await request.app[PROVIDERS].view(principal.client_id)
    return json_response(
        MeOut(
            client_id=provider.client_id,
            organisation=provider.organisation,
            state=provider.state,
            services=provider.services,
            functionalities=provider.functionalities,
            granted_scopes=provider.scopes,
            token_scopes=ordered(principal.scopes),
            webhook_url=provider.webhook_url,
        )
    )


@routes.post("/v1/me/webhook-secret")
@requires_scope("events")
async def rotate_webhook_secret(request: web.Request) -> web.Response:
    """Replace the provider's webhook secret; the new one is in this answer only."""
    principal = current_provider(request)
    assert principal.client_id is not None
    secret = await request.app[PROVIDERS].rotate_webhook_secret(principal.client_id)
    return json_response({"webhook_secret": secret}, headers={"Cache-Control": "no-store"})


# -- admin ----------------------------------------------------------------------------------


@routes.get("/admin/v1/interop-requests")
async def list_requests(request: web.Request) -> web.Response:
    """Interop requests, nearest deadline first, optionally of one status."""
    require_admin(request)
    status = cast(RequestStatus | None, _choice(request, "status", REQUEST_STATUSES))
    items = await request.app[INTEROP_REQUESTS].list(status, limit=_limit(request))
    return json_response({"items": items})


@routes.post("/admin/v1/interop-requests/{id}/decision")
async def decide_request(request: web.Request) -> web.Response:
    """Approve (creates the provider) or reject (with a reason) a received request."""
    require_admin(request)
    decision = await decode_json(request, Decision)
    view = await request.app[INTEROP_REQUESTS].decide(request.match_info["id"], decision)
    return json_response(view)


@routes.get("/admin/v1/interop-requests/{id}")
async def show_request(request: web.Request) -> web.Response:
    """One request, with its plan and deadlines."""
    require_admin(request)
    return json_response(await request.app[INTEROP_REQUESTS].admin_view(request.match_info["id"]))


async def _admin_step(request: web.Request, step: ProcessStep, body: Any) -> web.Response:
    request_id = request.match_info["id"]
    await step(request.app[REQUEST_PROCESS], request_id, body)
    return json_response(await request.app[INTEROP_REQUESTS].admin_view(request_id))


@routes.post("/admin/v1/interop-requests/{id}/plan")
async def plan_request(request: web.Request) -> web.Response:
    """Commit to dates for the next update and for going live (opens the comment window)."""
    require_admin(request)
    return await _admin_step(request, RequestProcess.plan, await decode_json(request, PlanIn))


@routes.post("/admin/v1/interop-requests/{id}/live")
async def request_live(request: web.Request) -> web.Response:
    """The requested functionalities are operational."""
    require_admin(request)
    body = await decode_json(request, LiveIn) if request.body_exists else LiveIn()
    return await _admin_step(request, RequestProcess.go_live, body)


@routes.post("/admin/v1/interop-requests/{id}/extend")
async def extend_request(request: web.Request) -> web.Response:
    """Extend the Art. 7(5) deadline (Art. 7(6)), with a reason and the new date."""
    require_admin(request)
    return await _admin_step(request, RequestProcess.extend, await decode_json(request, ExtendIn))


@routes.post("/admin/v1/interop-requests/{id}/review")
async def review_dispute(request: web.Request) -> web.Response:
    """Decide a dispute: uphold the step, or revise it."""
    require_admin(request)
    return await _admin_step(request, RequestProcess.review, await decode_json(request, ReviewIn))


@routes.get("/admin/v1/providers")
async def list_providers(request: web.Request) -> web.Response:
    """Registered providers, optionally of one state."""
    require_admin(request)
    state = cast(ProviderState | None, _choice(request, "state", get_args(ProviderState)))
    items = await request.app[PROVIDERS].list(state)
    return json_response({"items": items})


async def _set_provider_state(request: web.Request, state: ProviderState) -> web.Response:
    require_admin(request)
    reason = await _reason(request)
    registry = request.app[PROVIDERS]
    change = registry.suspend if state == "suspended" else registry.resume
    provider = await change(request.match_info["client_id"], actor="admin", reason=reason)
    return json_response(provider)


@routes.post("/admin/v1/providers/{client_id}/suspend")
async def suspend_provider(request: web.Request) -> web.Response:
    """Suspend a provider (Art. 7(9)); its access tokens stop working at once."""
    return await _set_provider_state(request, "suspended")


@routes.post("/admin/v1/providers/{client_id}/resume")
async def resume_provider(request: web.Request) -> web.Response:
    """Let a suspended provider in again."""
    return await _set_provider_state(request, "active")


@routes.post("/admin/v1/token-keys/rotate")
async def rotate_token_keys(request: web.Request) -> web.Response:
    """Sign access tokens with a new key; the old ones stay published until their tokens expire."""
    require_admin(request)
    kid, kept = request.app[ACCESS_TOKENS].rotate()
    return json_response({"kid": kid, "retiring": kept})
