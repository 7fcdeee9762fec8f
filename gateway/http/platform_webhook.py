"""Webhooks from the real services (`platforms = http`): Meta's handshake and signed events,
and the signed claim of third-party users' keys by a platform."""

from __future__ import annotations

from aiohttp import web

from gateway.errors import NotFound
from gateway.http.app_keys import CONFIG, INGRESS
from gateway.http.body import json_response, read_body, require_json
from gateway.platforms.ingress import Ingress, verify_subscription

routes = web.RouteTableDef()


def _ingress(request: web.Request) -> Ingress:
    ingress = request.app.get(INGRESS)
    if ingress is None:
        raise NotFound("Platform webhooks are taken only with platforms = http.")
    return ingress


@routes.get("/platform/v1/{service}/webhook")
async def verify(request: web.Request) -> web.Response:
    """Meta's verification handshake: echo hub.challenge for the right hub.verify_token."""
    _ingress(request)
    query = request.query
    verify_subscription(
        request.app[CONFIG],
        request.match_info["service"],
        query.get("hub.mode", ""),
        query.get("hub.verify_token", ""),
    )
    return web.Response(text=query.get("hub.challenge", ""), content_type="text/plain")


@routes.post("/platform/v1/{service}/webhook")
async def receive(request: web.Request) -> web.Response:
    """A signed native webhook: messages, statuses and typing for third-party users."""
    ingress = _ingress(request)
    require_json(request)
    body = await read_body(request)
    ids = await ingress.receive(
        request.match_info["service"], body, request.headers.get("X-Hub-Signature-256")
    )
    return json_response({"accepted": len(ids), "ids": ids})


@routes.get("/platform/v1/{service}/keys")
async def claim_keys(request: web.Request) -> web.Response:
    """A platform claims a third-party user's keys for one of its users (signed, consent-checked):
    a platform user encrypting to a third-party user (DESIGN §4.8)."""
    ingress = _ingress(request)
    bundle = await ingress.claim_keys(
        request.match_info["service"],
        request.query.get("user", ""),
        request.query.get("for", ""),
        request.headers.get("X-Hub-Signature-256"),
    )
    return json_response(bundle)
