"""The OAuth token endpoint and the JWKS of the keys that sign access tokens.

The token endpoint answers errors as RFC 6749 §5.2 JSON ({error, error_description}), the one
exception to problem+json, because OAuth clients expect exactly that.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from aiohttp import web

from gateway import metrics
from gateway.errors import OAuthError
from gateway.http.app_keys import ACCESS_TOKENS, TOKEN_ENDPOINT
from gateway.http.auth import public
from gateway.http.body import json_response, read_body

routes = web.RouteTableDef()

FORM = "application/x-www-form-urlencoded"
# RFC 6749 §5.1: token responses must not be cached.
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


async def _form(request: web.Request) -> dict[str, str]:
    if request.content_type != FORM:
        raise OAuthError("invalid_request", f"The request body must be {FORM}.")
    try:
        pairs = parse_qsl((await read_body(request)).decode(), keep_blank_values=True)
    except (UnicodeDecodeError, ValueError):
        raise OAuthError("invalid_request", "The form body is not valid.") from None
    params: dict[str, str] = {}
    for name, value in pairs:
        if name in params:  # RFC 6749 §3.2: parameters must not be repeated
            raise OAuthError("invalid_request", f"The parameter {name} is repeated.")
        params[name] = value
    return params


@routes.post("/v1/oauth/token")
@public(limit="token")
async def token(request: web.Request) -> web.Response:
    """client_credentials + private_key_jwt -> a Bearer access token (RFC 6749, RFC 7523)."""
    try:
        answer = await request.app[TOKEN_ENDPOINT].exchange(await _form(request))
    except OAuthError as exc:
        metrics.TOKENS_REFUSED.labels(exc.error).inc()
        return json_response(
            {"error": exc.error, "error_description": exc.detail},
            status=exc.oauth_status,
            headers={**_NO_STORE, **exc.headers},
        )
    metrics.TOKENS_ISSUED.inc()
    return json_response(answer, headers=_NO_STORE)


@routes.get("/.well-known/jwks.json")
async def jwks(request: web.Request) -> web.Response:
    """The public keys that verify this gateway's access tokens."""
    return json_response(
        request.app[ACCESS_TOKENS].jwks(), headers={"Cache-Control": "public, max-age=60"}
    )
