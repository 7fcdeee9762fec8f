"""Per-route checks of who is asking."""

from __future__ import annotations

import hmac

from aiohttp import web

from gateway.errors import Unauthorized
from gateway.http.app_keys import ADMIN_TOKEN, PRINCIPAL
from gateway.service.principal import ADMIN, ANONYMOUS, Principal


def bearer_token(request: web.Request) -> str | None:
    """The token of an `Authorization: Bearer` header, or None."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def principal(request: web.Request) -> Principal:
    """The principal this request acts as (anonymous unless authenticated)."""
    return request.get(PRINCIPAL, ANONYMOUS)


def require_admin(request: web.Request) -> Principal:
    """Let only the holder of the admin token through (constant-time comparison)."""
    token = bearer_token(request)
    expected = request.app[ADMIN_TOKEN].encode()
    if token is None or not hmac.compare_digest(token.encode(), expected):
        raise Unauthorized(
            "This endpoint needs the admin token as a Bearer credential.",
            headers={"WWW-Authenticate": 'Bearer realm="admin"'},
        )
    request[PRINCIPAL] = ADMIN
    return ADMIN
