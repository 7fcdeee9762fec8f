"""Provider authentication, scopes and rate limits, declared per route and enforced in one place.

A handler says who may call it:

    @routes.post("/v1/messages")
    @requires_scope("messages")
    async def send(request): provider = current_provider(request); ...

    @routes.post("/v1/interop-requests")
    @public(limit="intake")
    async def submit(request): ...

`auth_middleware` reads the declaration: a provider route needs a valid access token of an
active provider holding every listed scope, and spends one token of that provider's bucket; a
public route with a `limit` spends one of the client IP's bucket. A /v1/ route that declares
nothing is treated as a provider route without scope (fail closed). Admin routes call
`require_admin` themselves.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web

from gateway.errors import InsufficientScope, RateLimited, Unauthorized
from gateway.http.app_keys import AUTHENTICATOR, CONFIG, PRINCIPAL, RATE_LIMITER
from gateway.http.guards import bearer_token
from gateway.service.principal import Principal
from gateway.service.ratelimit import retry_after_s
from gateway.service.scopes import SCOPES

H = TypeVar("H", bound=Callable[..., Awaitable[web.StreamResponse]])
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Rate-limit buckets: one per scope, `default` for provider routes without one, and the two
# anonymous ones (per client IP). Each is a `[limits.<class>]` table of the configuration.
LIMIT_CLASSES: tuple[str, ...] = (*SCOPES, "default", "intake", "token")
_ATTRIBUTE = "__gateway_route_access__"


@dataclass(frozen=True)
class RouteAccess:
    """Who may call a route: a provider holding `scopes`, or anyone; and its bucket."""

    provider: bool
    scopes: frozenset[str]
    limit: str | None


def _declare(access: RouteAccess) -> Callable[[H], H]:
    if access.limit is not None and access.limit not in LIMIT_CLASSES:
        raise ValueError(f"unknown rate-limit class {access.limit!r}")
    unknown = access.scopes - set(SCOPES)
    if unknown:
        raise ValueError(f"unknown scopes {sorted(unknown)}")

    def mark(handler: H) -> H:
        setattr(handler, _ATTRIBUTE, access)
        return handler

    return mark


def requires_scope(*scopes: str, limit: str | None = None) -> Callable[[H], H]:
    """Provider-only route needing every scope listed (none: any valid access token).

    Its rate-limit bucket is `limit`, by default its first scope, else `default`.
    """
    bucket = limit or (scopes[0] if scopes else "default")
    return _declare(RouteAccess(provider=True, scopes=frozenset(scopes), limit=bucket))


def public(*, limit: str | None = None) -> Callable[[H], H]:
    """Route open without a provider token; `limit` names a per-client-IP bucket."""
    return _declare(RouteAccess(provider=False, scopes=frozenset(), limit=limit))


_FAIL_CLOSED = RouteAccess(provider=True, scopes=frozenset(), limit="default")


def route_access(request: web.Request) -> RouteAccess | None:
    """The declaration of the matched route; None for admin, ops and unmatched routes."""
    info = request.match_info
    if info.http_exception is not None:
        return None
    declared: RouteAccess | None = getattr(info.handler, _ATTRIBUTE, None)
    if declared is None and request.path.startswith("/v1/"):
        return _FAIL_CLOSED
    return declared


def current_provider(request: web.Request) -> Principal:
    """The authenticated provider of a `requires_scope` route (its client_id is set)."""
    principal: Principal | None = request.get(PRINCIPAL)
    if principal is None or principal.kind != "provider" or principal.client_id is None:
        raise Unauthorized(
            "This endpoint needs a provider access token.",
            headers={"WWW-Authenticate": 'Bearer realm="dma-gateway"'},
        )
    return principal


async def authenticate_provider(request: web.Request, token: str) -> Principal:
    """Verify `token` as a provider access token and make it the request's principal."""
    principal = await request.app[AUTHENTICATOR].authenticate(token)
    request[PRINCIPAL] = principal
    return principal


async def spend_limit(request: web.Request, bucket_class: str, who: str) -> None:
    """Spend one token of `who`'s `bucket_class` bucket, or raise RateLimited."""
    await spend_app_limit(request.app, bucket_class, who)


async def spend_app_limit(app: web.Application, bucket_class: str, who: str) -> None:
    """`spend_limit` outside a request (a message on an event socket)."""
    limits = app[CONFIG].limits
    if not limits.enabled:
        return
    bucket = getattr(limits, bucket_class)
    wait = await app[RATE_LIMITER].take(f"{who}:{bucket_class}", bucket)
    if wait > 0:
        raise RateLimited(
            f"Too many requests in the {bucket_class!r} class; retry later.",
            retry_after=retry_after_s(wait),
            limit_class=bucket_class,
        )


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Enforce the matched route's declaration (see module docstring)."""
    access = route_access(request)
    if access is None:
        return await handler(request)
    if access.provider:
        token = bearer_token(request)
        if token is None:
            raise Unauthorized(
                "This endpoint needs a provider access token (Authorization: Bearer).",
                headers={"WWW-Authenticate": 'Bearer realm="dma-gateway"'},
            )
        principal = await authenticate_provider(request, token)
        missing = access.scopes - principal.scopes
        if missing:
            needed = " ".join(sorted(access.scopes))
            raise InsufficientScope(f"This endpoint needs the scope(s): {needed}.", scope=needed)
        if access.limit is not None:
            await spend_limit(request, access.limit, f"provider:{principal.client_id}")
    elif access.limit is not None:
        await spend_limit(request, access.limit, f"ip:{request.remote or 'unknown'}")
    return await handler(request)


def declared_access(handler: Any) -> RouteAccess | None:
    """The declaration on a handler (for tests that check every /v1/ route declares one)."""
    return getattr(handler, _ATTRIBUTE, None)
