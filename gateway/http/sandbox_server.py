"""The standalone sandbox (`dma-gateway sandbox serve`, DESIGN §4.8): the simulated platforms in a
process of their own, speaking the `http` platform protocol to a gateway.

It serves the same admin API as the embedded sandbox (`/sandbox/v1/*`, gateway.http.sandbox),
with an admin token and a data dir of its own (its own SQLite database, `sandbox.db`), and the
services' side of the protocol: the send APIs the gateway posts native bodies to
(`POST /{service}/messages`) and the key bundles it claims (`GET /{service}/keys?user=<id>`).
What its users send reaches the gateway as signed webhooks (gateway.platforms.sandbox_link).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgspec
from aiohttp import web

from gateway import secretfiles
from gateway.config import Config
from gateway.errors import NotFound, Unavailable, ValidationFailed
from gateway.http import sandbox
from gateway.http.app_keys import ADMIN_TOKEN, CONFIG, SANDBOX
from gateway.http.body import json_response, read_body, require_json
from gateway.http.middlewares import problem_middleware, request_middleware
from gateway.platforms.base import SERVICES, PermanentDelivery, RetryableDelivery
from gateway.platforms.sandbox_link import GatewayLink, SendApi, StandaloneSandbox
from gateway.platforms.sandbox_state import SandboxState, load_sandbox_key
from gateway.store import open_store
from gateway.translate import platform_uri

routes = web.RouteTableDef()
GATEWAY_URL = web.AppKey("gateway_url", str)
LINK = web.AppKey("gateway_link", GatewayLink)
SEND_API = web.AppKey("send_api", SendApi)
DATABASE = "sandbox.db"


def _service(request: web.Request) -> str:
    service = request.match_info["service"]
    if service not in SERVICES:
        raise NotFound("No such service.")
    return service


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """Up, with its database open; `pending` webhooks wait for the gateway."""
    return json_response({"status": "ready", "pending": request.app[LINK].pending})


@routes.post("/{service}/messages")
async def messages(request: web.Request) -> web.Response:
    """A service's send API: one native body from the gateway, for one of the sandbox's users."""
    service = _service(request)
    require_json(request)
    raw = await read_body(request)
    # The same body posted again (a retry) has the same id: the user receives it once.
    native_id = "S" + hashlib.sha256(raw).hexdigest()[:24]
    try:
        body = msgspec.json.decode(raw)
        item = request.app[SEND_API].outgoing(service, body, native_id)
    except (msgspec.DecodeError, KeyError, TypeError, AttributeError):
        raise ValidationFailed("Not a send request of this service.", field="$") from None
    if item is not None:
        try:
            await request.app[SANDBOX].deliver(item)
        except RetryableDelivery:
            raise Unavailable("The service is down; try again.") from None
        except PermanentDelivery as exc:
            if exc.reason == "unknown_recipient":
                raise NotFound("No such user.", field="$.to") from None
            raise ValidationFailed("The user's device refused the message.", field="$") from None
    if service == "whatsapp":
        answer: dict[str, Any] = {"messaging_product": "whatsapp", "messages": [{"id": native_id}]}
    else:
        answer = {"message_id": native_id}
    return json_response(answer)


@routes.get("/{service}/keys")
async def keys(request: web.Request) -> web.Response:
    """A user's key bundle, one one-time key claimed (the gateway claims for a provider)."""
    service = _service(request)
    user = request.query.get("user", "")
    if not user:
        raise ValidationFailed("The `user` query parameter is required.", field="user")
    bundle = await request.app[SANDBOX].claim_key_bundle(platform_uri(service, user))
    if bundle is None:
        raise NotFound("No such user.", field="user")
    return json_response(msgspec.to_builtins(bundle))


async def sandbox_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    data = config.data_path
    await asyncio.to_thread(data.mkdir, parents=True, exist_ok=True)
    token, _, _ = await asyncio.to_thread(secretfiles.admin_token, data, config.admin_token)
    app[ADMIN_TOKEN] = token
    key = await asyncio.to_thread(load_sandbox_key, data)
    store = await open_store(f"sqlite:///{data / DATABASE}")
    session = aiohttp.ClientSession()
    link = app[LINK] = GatewayLink(
        app[GATEWAY_URL], config.http_platform.app_secret, session,
        data / "sandbox-webhook-queue.jsonl",
    )  # fmt: skip
    app[SEND_API] = SendApi(link)
    platform = app[SANDBOX] = StandaloneSandbox(
        SandboxState(store, key),
        inbound=link,
        third_party_keys=link.third_party_keys,
        set_consent=link.set_consent,
    )
    link.start()
    yield
    await platform.close()
    await link.close()
    await session.close()
    await store.close()


def create_sandbox_app(config: Config, gateway_url: str) -> web.Application:
    """The standalone sandbox for `config` (data dir, admin token, app secret) and the gateway
    at `gateway_url`; resources open when it starts."""
    app = web.Application(
        middlewares=[request_middleware, problem_middleware],
        client_max_size=config.server.max_body_bytes,
    )
    app[CONFIG] = config
    app[GATEWAY_URL] = gateway_url
    app.cleanup_ctx.append(sandbox_ctx)
    app.add_routes(sandbox.routes)
    app.add_routes(routes)
    return app
