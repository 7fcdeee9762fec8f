"""Operational routes: health, readiness, metrics, the reference offer and the OpenAPI document."""

from __future__ import annotations

import hmac
from pathlib import Path

import prometheus_client
from aiohttp import web

from gateway.errors import NotFound, Unauthorized, Unavailable
from gateway.http.app_keys import CONFIG, OFFER, STORE
from gateway.http.body import json_response
from gateway.http.guards import bearer_token
from gateway.http.middlewares import problem_middleware
from gateway.store import StoreError

OPENAPI_PATH = Path(__file__).resolve().parents[2] / "specs" / "openapi.json"

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """The process is up."""
    return json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """Storage answers and the writer runs."""
    try:
        await request.app[STORE].ping()
    except StoreError:
        raise Unavailable("Storage is not reachable.", headers={"Retry-After": "5"}) from None
    return json_response({"status": "ready"})


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition, unless metrics have a listener of their own."""
    config = request.app[CONFIG].metrics
    if config.listen:
        raise NotFound()
    return exposition(request, config.token)


def exposition(request: web.Request, token: str) -> web.Response:
    """The process registry in Prometheus text format; with a token, for its bearer only."""
    if token:
        given = bearer_token(request)
        if given is None or not hmac.compare_digest(given.encode(), token.encode()):
            raise Unauthorized(
                "Metrics need the metrics token (Authorization: Bearer).",
                headers={"WWW-Authenticate": 'Bearer realm="dma-gateway-metrics"'},
            )
    body = prometheus_client.generate_latest(prometheus_client.REGISTRY)
    return web.Response(body=body, headers={"Content-Type": prometheus_client.CONTENT_TYPE_LATEST})


def metrics_app(token: str) -> web.Application:
    """The application of the separate metrics listener (`metrics.listen`): /metrics alone."""

    async def handler(request: web.Request) -> web.Response:
        return exposition(request, token)

    app = web.Application(middlewares=[problem_middleware])
    app.router.add_get("/metrics", handler)
    return app


@routes.get("/.well-known/dma-interop")
async def reference_offer(request: web.Request) -> web.Response:
    """The machine-readable reference offer (Art. 7(4))."""
    return web.Response(
        body=request.app[OFFER],
        content_type="application/json",
        headers={"Cache-Control": "public, max-age=300"},
    )


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 document, byte for byte specs/openapi.json."""
    return web.Response(body=OPENAPI_PATH.read_bytes(), content_type="application/json")
