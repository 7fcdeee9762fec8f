"""Events to providers (DESIGN §4.6): long-poll pull with acks, and a WebSocket stream.

Open streams are registered with `EventStreams`: a suspension ends them on every replica (a
long poll answers 403 provider-suspended, a socket closes with 4001), and a socket closes with
4002 when its access token expires unless the client sent a fresh one on it (`{"auth": ...}`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar

import structlog
from aiohttp import web

from gateway.errors import GatewayError, ProviderSuspended, ValidationFailed
from gateway.http.app_keys import AUTHENTICATOR, EVENT_STREAMS, EVENTS
from gateway.http.auth import requires_scope
from gateway.http.body import decode_json, json_response
from gateway.http.event_socket import EventSocket
from gateway.http.guards import bearer_token, principal
from gateway.http.messages import provider
from gateway.http.middlewares import REQUEST_ID
from gateway.http.websocket import accept, accept_headers
from gateway.service.event_streams import Stream
from gateway.service.events import parse_cursor
from gateway.service.relay_types import AckIn

routes = web.RouteTableDef()
log = structlog.get_logger(__name__)

T = TypeVar("T")

MAX_LIMIT = 500
MAX_WAIT_S = 30.0


def _number(request: web.Request, name: str, default: float, top: float) -> float:
    text = request.query.get(name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ValidationFailed(f"`{name}` must be a number.", field=name) from None
    if not 0 <= value <= top:
        raise ValidationFailed(f"`{name}` must be between 0 and {top:g}.", field=name)
    return value


async def _unless_ended(stream: Stream, work: Awaitable[T]) -> T:
    """`work`'s result, or ProviderSuspended as soon as the stream is ended."""
    task = asyncio.ensure_future(work)
    ended = asyncio.ensure_future(stream.wait_ended())
    try:
        await asyncio.wait({task, ended}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in (task, ended):
            if not pending.done():
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pending
    if stream.is_ended:
        raise ProviderSuspended(
            "This provider was suspended; no request of it is served until it is resumed."
        )
    return task.result()


@routes.get("/v1/events")
@requires_scope("events")
async def pull(request: web.Request) -> web.Response:
    """Events after the cursor (default: the last ack), waiting up to `wait` seconds."""
    client_id = provider(request)
    after = parse_cursor(request.query.get("after"), "after")
    limit = int(_number(request, "limit", 100, MAX_LIMIT)) or 1
    wait = _number(request, "wait", 0, MAX_WAIT_S)
    with request.app[EVENT_STREAMS].open(client_id) as stream:
        page = await _unless_ended(stream, request.app[EVENTS].wait(client_id, after, limit, wait))
    return json_response(page)


@routes.post("/v1/events/ack")
@requires_scope("events")
async def ack(request: web.Request) -> web.Response:
    """Acknowledge every event up to `cursor`: they leave the queue."""
    client_id = provider(request)
    body = await decode_json(request, AckIn)
    cursor = parse_cursor(body.cursor, "$.cursor")
    if cursor is None:
        raise ValidationFailed("`cursor` is required.", field="$.cursor")
    await request.app[EVENTS].ack(client_id, cursor)
    return json_response({"cursor": str(cursor)})


@routes.get("/v1/events/ws")
@requires_scope("events")
async def stream(request: web.Request) -> web.StreamResponse:
    """A WebSocket of event pages `{events, next}`; the client sends `{"ack": cursor}`.

    Unacknowledged events are sent again on the next connection (at least once). The client
    keeps the socket past its token's expiry by sending `{"auth": "<new access token>"}`.
    Once upgraded, the connection is served by an `EventSocket` (gateway.http.event_socket),
    not by this handler: an idle socket holds no request and no task.
    """
    client_id = provider(request)
    token = bearer_token(request)
    assert token is not None  # requires_scope authenticated it
    _, expires = await request.app[AUTHENTICATOR].authenticate_until(token)
    del token  # not kept for the socket's lifetime
    streams = request.app[EVENT_STREAMS]
    registered = streams.register(client_id, socket=True)  # 409 beyond the cap
    try:
        headers = accept_headers(request)
    except GatewayError:
        streams.release(registered)
        raise
    socket = EventSocket(request.app, registered, principal(request), request[REQUEST_ID], expires)
    return await accept(request, socket, headers)
