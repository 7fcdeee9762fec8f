"""Key directory routes: `PUT /v1/users/{user}/keys` and `GET /v1/keys` (DESIGN §4.4)."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec
from aiohttp import web

from gateway.crypto import KeyBundle
from gateway.errors import Forbidden, Unauthorized, ValidationFailed
from gateway.http.app_keys import AUDIT, AUDIT_LOG, KEY_DIRECTORY, KEY_TRANSPARENCY
from gateway.http.auth import requires_scope
from gateway.http.body import decode_json, json_response
from gateway.http.guards import principal
from gateway.service.key_directory import KeyAudit
from gateway.service.principal import Principal
from gateway.store import Tx
from gateway.uris import LOCAL_ID, parse_user_uri

routes = web.RouteTableDef()


def require_provider(request: web.Request, scope: str) -> Principal:
    """The provider principal of this request, holding `scope`."""
    who = principal(request)
    if who.kind != "provider" or who.client_id is None:
        raise Unauthorized(
            "This endpoint needs a provider access token.",
            headers={"WWW-Authenticate": 'Bearer realm="dma-gateway"'},
        )
    if scope not in who.scopes:
        raise Forbidden(f"This endpoint needs the '{scope}' scope.")
    return who


def own_local_id(client_id: str, user: str) -> str:
    """The provider-local id of `{user}`; a full URI must name this provider."""
    if LOCAL_ID.match(user):
        return user
    uri = parse_user_uri(user)
    if uri is None:
        raise ValidationFailed("Not a user id.", field="user")
    if uri.authority != client_id:
        # Tenant isolation: a provider publishes keys for its own users only.
        raise Forbidden("A provider publishes keys for its own users only.", field="user")
    return uri.local


def audit_in(request: web.Request, *, status: int = 200) -> KeyAudit:
    """Write this request's audit record (and its events) inside the service's write unit."""
    ctx, audit_log = request[AUDIT], request.app[AUDIT_LOG]

    async def hook(tx: Tx, action: str | None, subjects: Iterable[str]) -> None:
        if action is None:
            await audit_log.append_in(tx, ctx, status=status, subjects=subjects)
        else:
            await audit_log.event_in(
                tx,
                action=action,
                subjects=subjects,
                actor=ctx.principal,
                request_id=ctx.request_id,
                status=status,
            )

    return hook


@routes.put("/v1/users/{user}/keys")
@requires_scope("keys")
async def publish_keys(request: web.Request) -> web.Response:
    """Publish (or replenish) a provider's user's Olm keys; every signature is checked."""
    who = require_provider(request, "keys")
    assert who.client_id is not None
    local = own_local_id(who.client_id, request.match_info["user"])
    bundle = await decode_json(request, KeyBundle)
    result = await request.app[KEY_DIRECTORY].publish(
        who.client_id, local, bundle, audit=audit_in(request)
    )
    return json_response(result)


@routes.get("/v1/keys")
@requires_scope("keys")
async def claim_keys(request: web.Request) -> web.Response:
    """A user's bundle with one claimed one-time key (or the fallback key when none are left)."""
    who = require_provider(request, "keys")
    assert who.client_id is not None
    target = request.query.get("user", "")
    if not target:
        raise ValidationFailed("The `user` query parameter is required.", field="user")
    claimed = await request.app[KEY_DIRECTORY].claim(
        who.client_id, target, audit=audit_in(request)
    )
    # DESIGN §4.12: the proof that these keys are the ones the signed log holds for the user.
    proof = await request.app[KEY_TRANSPARENCY].proof_for(
        claimed.user, claimed.identity_key, claimed.signing_key
    )
    answer = {**msgspec.to_builtins(claimed), "transparency": proof}
    return json_response(answer, headers={"Cache-Control": "no-store"})
