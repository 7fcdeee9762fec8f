"""Request id, request log and metrics (one middleware), and the one problem+json renderer."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web

from gateway import metrics
from gateway.errors import GatewayError, problem_for_status
from gateway.http.problem import problem_response
from gateway.ids import new_id

log = structlog.get_logger("gateway.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

REQUEST_ID = web.RequestKey("request_id", str)
REQUEST_ID_HEADER = "X-Request-Id"
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@-]{1,128}\Z")
# nginx's "client closed request": the client left before the answer; not a server failure.
CLIENT_CLOSED = 499
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def route_template(request: web.Request) -> str:
    """The matched route's template (bounded), never the raw path."""
    info = request.match_info
    route = getattr(info, "route", None)
    resource = getattr(route, "resource", None)
    if resource is None or info.http_exception is not None:
        return "unmatched"
    return str(resource.canonical)


# Per (route, method, status): the metric children, looked up once (labels() takes a lock
# and validates its arguments on every call). Bounded: routes are templates, methods known.
_REQUEST_METRICS: dict[tuple[str, str, int], tuple[Any, Any]] = {}


def _request_metrics(route: str, method: str, status: int) -> tuple[Any, Any]:
    key = (route, method, status)
    found = _REQUEST_METRICS.get(key)
    if found is None:
        found = (
            metrics.HTTP_REQUESTS.labels(route, method, str(status)),
            metrics.HTTP_DURATION.labels(route, method),
        )
        _REQUEST_METRICS[key] = found
    return found


@web.middleware
async def request_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request id (a sane X-Request-Id or a fresh one; bound to logs; echoed), then one log
    line and the metrics of the request, labelled by route template (one layer, not two)."""
    incoming = request.headers.get(REQUEST_ID_HEADER)
    request_id = (
        incoming if incoming is not None and _SANE_REQUEST_ID.match(incoming) else new_id()
    )
    request[REQUEST_ID] = request_id
    route = route_template(request)
    method = request.method if request.method in _KNOWN_METHODS else "OTHER"
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id, route=route)
    started = time.perf_counter()
    metrics.HTTP_IN_FLIGHT.inc()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        if not response.prepared:
            response.headers[REQUEST_ID_HEADER] = request_id
        return response
    except asyncio.CancelledError:
        status = CLIENT_CLOSED
        raise
    finally:
        elapsed = time.perf_counter() - started
        metrics.HTTP_IN_FLIGHT.dec()
        requests, duration = _request_metrics(route, method, status)
        requests.inc()
        duration.observe(elapsed)
        if status == 429:
            metrics.RATE_LIMITED.labels(route).inc()
        log.info(
            "request_handled",
            method=method,
            status=status,
            duration_ms=round(elapsed * 1000, 3),
        )


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Render every failure as application/problem+json; never leak internals in a 500."""
    request_id = request.get(REQUEST_ID)
    try:
        return await handler(request)
    except GatewayError as exc:
        return problem_response(
            exc.status,
            exc.type,
            exc.title,
            exc.detail,
            request_id=request_id,
            field=exc.field,
            headers=exc.headers,
            extra=exc.extra,
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        # Router and framework errors keep our problem vocabulary.
        general = problem_for_status(exc.status)
        type_, title = (general.type, general.title) if general else ("about:blank", exc.reason)
        headers = {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}
        return problem_response(
            exc.status,
            type_,
            title,
            _http_detail(exc, request),
            request_id=request_id,
            headers=headers,
        )
    except Exception:
        log.exception("unhandled_error")
        return problem_response(
            500,
            "about:blank",
            "Internal Server Error",
            "The gateway failed to handle this request; it has been logged.",
            request_id=request_id,
        )


def _http_detail(exc: web.HTTPException, request: web.Request) -> str:
    if exc.status == 404:
        return "No resource matches this path."
    if exc.status == 405:
        allowed = exc.headers.get("Allow", "")
        return f"Method {request.method} is not allowed here; allowed: {allowed}."
    if exc.status == 413:
        return "The body is larger than the limit."
    return exc.reason
