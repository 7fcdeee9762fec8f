"""Events to providers (DESIGN §4.6): long-poll pull with acks, and a WebSocket stream."""

from __future__ import annotations

import asyncio
import contextlib

import msgspec
from aiohttp import WSMsgType, web

from gateway.errors import ValidationFailed
from gateway.http.auth import requires_scope
from gateway.http.body import decode_json, json_response
from gateway.http.keys import EVENTS
from gateway.http.messages import provider
from gateway.service.events import EventQueue, parse_cursor
from gateway.service.relay_types import AckIn

routes = web.RouteTableDef()

MAX_LIMIT = 500
MAX_WAIT_S = 30.0
WS_WAIT_S = 20.0


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


@routes.get("/v1/events")
@requires_scope("events")
async def pull(request: web.Request) -> web.Response:
    """Events after the cursor (default: the last ack), waiting up to `wait` seconds."""
    client_id = provider(request)
    after = parse_cursor(request.query.get("after"), "after")
    limit = int(_number(request, "limit", 100, MAX_LIMIT)) or 1
    wait = _number(request, "wait", 0, MAX_WAIT_S)
    page = await request.app[EVENTS].wait(client_id, after, limit, wait)
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


class _WsAck(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    ack: str


_ws_ack = msgspec.json.Decoder(_WsAck)


@routes.get("/v1/events/ws")
@requires_scope("events")
async def stream(request: web.Request) -> web.StreamResponse:
    """A WebSocket of event pages `{events, next}`; the client sends `{"ack": cursor}`.

    Unacknowledged events are sent again on the next connection (at least once).
    """
    client_id = provider(request)
    queue = request.app[EVENTS]
    ws = web.WebSocketResponse(heartbeat=30.0)
    await ws.prepare(request)
    sender = asyncio.get_running_loop().create_task(_send_pages(ws, queue, client_id))
    try:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            try:
                cursor = parse_cursor(_ws_ack.decode(msg.data).ack, "ack")
                if cursor is not None:
                    await queue.ack(client_id, cursor)
            except (msgspec.DecodeError, msgspec.ValidationError):
                await ws.send_json({"error": 'expected {"ack": "<cursor>"}'})
            except Exception as exc:  # a bad ack answers on the socket, it does not close it
                await ws.send_json({"error": getattr(exc, "detail", "ack failed")})
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
    return ws


async def _send_pages(ws: web.WebSocketResponse, queue: EventQueue, client_id: str) -> None:
    after: int | None = None
    while not ws.closed:
        page = await queue.wait(client_id, after, MAX_LIMIT, WS_WAIT_S)
        if page.events:
            await ws.send_str(msgspec.json.encode(page).decode())
        after = int(page.next)
