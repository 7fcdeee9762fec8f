"""Events to providers (DESIGN §4.6): long-poll pull with acks, and a WebSocket stream.

Open streams are registered with `EventStreams`: a suspension ends them on every replica (a
long poll answers 403 provider-suspended, a socket closes with 4001), and a socket closes with
4002 when its access token expires unless the client sent a fresh one on it (`{"auth": ...}`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable
from typing import TypeVar

import msgspec
import structlog
from aiohttp import WSCloseCode, WSMsgType, web

from gateway.errors import GatewayError, ProviderSuspended, ValidationFailed
from gateway.http.app_keys import AUTHENTICATOR, EVENT_STREAMS, EVENTS
from gateway.http.audit import audit_socket_ack
from gateway.http.auth import requires_scope, spend_limit
from gateway.http.body import decode_json, json_response
from gateway.http.guards import bearer_token
from gateway.http.messages import provider
from gateway.service.event_streams import (
    CLOSE_AUTH_FAILED,
    CLOSE_SUSPENDED,
    CLOSE_TOKEN_EXPIRED,
    Stream,
)
from gateway.service.events import EventQueue, parse_cursor
from gateway.service.relay_types import AckIn

routes = web.RouteTableDef()
log = structlog.get_logger(__name__)

T = TypeVar("T")

MAX_LIMIT = 500
MAX_WAIT_S = 30.0
_CLOSE_REASONS = {
    CLOSE_SUSPENDED: b"provider suspended",
    CLOSE_TOKEN_EXPIRED: b"access token expired",
    CLOSE_AUTH_FAILED: b"authentication failed",
}


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
    ended = asyncio.ensure_future(stream.ended.wait())
    try:
        await asyncio.wait({task, ended}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in (task, ended):
            if not pending.done():
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pending
    if stream.ended.is_set():
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


class _WsMessage(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    ack: str | None = None
    auth: str | None = None


_ws_message = msgspec.json.Decoder(_WsMessage)
_WS_USAGE = 'expected {"ack": "<cursor>"} or {"auth": "<access token>"}'


class _Socket:
    """One event socket: its provider, its token's expiry, its stream registration."""

    def __init__(self, request: web.Request, client_id: str, stream: Stream, expires: int):
        self.request = request
        self.client_id = client_id
        self.stream = stream
        self.expires = expires
        self.ws = web.WebSocketResponse(heartbeat=30.0)
        self._timer: asyncio.TimerHandle | None = None
        self._closing: asyncio.Task[bool] | None = None

    async def handle(self, text: str) -> None:
        """Answer one client message: an ack or a re-authentication."""
        try:
            message = _ws_message.decode(text)
        except (msgspec.DecodeError, msgspec.ValidationError):
            await self.ws.send_json({"error": _WS_USAGE})
            return
        try:
            if message.auth is not None:
                await self._reauthenticate(message.auth)
            elif message.ack is not None:
                await self._ack(message.ack)
            else:
                await self.ws.send_json({"error": _WS_USAGE})
        except GatewayError as exc:  # a bad message answers on the socket, it does not close it
            answer: dict[str, object] = {"error": exc.detail, "type": exc.type}
            if "Retry-After" in exc.headers:
                answer["retry_after"] = int(exc.headers["Retry-After"])
            await self.ws.send_json(answer)

    async def _ack(self, text: str) -> None:
        # Rate-limited and audited as `POST /v1/events/ack` is.
        request = self.request
        await spend_limit(request, "events", f"provider:{self.client_id}")
        cursor = parse_cursor(text, "ack")
        if cursor is None:
            raise ValidationFailed("`ack` must be a cursor.", field="ack")
        try:
            await request.app[EVENTS].ack(self.client_id, cursor)
        except GatewayError as exc:
            await audit_socket_ack(request, exc.status, exc.type)
            raise
        await audit_socket_ack(request, 200, None)

    async def _reauthenticate(self, token: str) -> None:
        principal, expires = await self.request.app[AUTHENTICATOR].authenticate_until(token)
        if principal.client_id != self.client_id or "events" not in principal.scopes:
            self.stream.end(CLOSE_AUTH_FAILED)
            return
        self.expires = expires
        await self.ws.send_json({"auth": "ok", "expires_at": expires})

    def watch(self) -> None:
        """Close the socket when its stream ends (suspension, another provider's token) or its
        token expires: a timer and a callback, no task waiting while the socket is idle."""
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(max(0.0, self.expires - time.time()), self._expiry)
        self.stream.on_end = self._ended
        if self.stream.ended.is_set():
            self._ended()

    def _expiry(self) -> None:
        remaining = self.expires - time.time()
        if remaining > 0:  # renewed meanwhile by {"auth": ...}
            self._timer = asyncio.get_running_loop().call_later(remaining, self._expiry)
            return
        self.stream.end(CLOSE_TOKEN_EXPIRED)

    def _ended(self) -> None:
        if self._closing is None:
            code = self.stream.close_code
            close = self.ws.close(code=code, message=_CLOSE_REASONS.get(code, b""))
            self._closing = asyncio.get_running_loop().create_task(close)

    async def unwatch(self) -> None:
        """Stop the timer and the callback; wait for a close under way."""
        if self._timer is not None:
            self._timer.cancel()
        self.stream.on_end = None
        if self._closing is not None:
            with contextlib.suppress(Exception):
                await self._closing


@routes.get("/v1/events/ws")
@requires_scope("events")
async def stream(request: web.Request) -> web.StreamResponse:
    """A WebSocket of event pages `{events, next}`; the client sends `{"ack": cursor}`.

    Unacknowledged events are sent again on the next connection (at least once). The client
    keeps the socket past its token's expiry by sending `{"auth": "<new access token>"}`.
    """
    client_id = provider(request)
    token = bearer_token(request)
    assert token is not None  # requires_scope authenticated it
    _, expires = await request.app[AUTHENTICATOR].authenticate_until(token)
    del token  # not kept for the socket's lifetime
    queue = request.app[EVENTS]
    with request.app[EVENT_STREAMS].open(client_id, socket=True) as registered:
        socket = _Socket(request, client_id, registered, expires)
        ws = socket.ws
        await ws.prepare(request)
        pages = _Pages(ws, queue, client_id)
        queue.subscribe(client_id, pages.wake)
        pages.wake()  # what is already queued (from the last ack)
        socket.watch()
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    await socket.handle(msg.data)
        finally:
            queue.unsubscribe(client_id, pages.wake)
            await pages.stop()
            await socket.unwatch()
    return ws


class _Pages:
    """Sends one socket its event pages when woken (EventQueue.subscribe): a task exists only
    while there is something to send, so an idle socket costs no task and no polling."""

    __slots__ = ("_after", "_again", "_client_id", "_queue", "_task", "_ws")

    def __init__(self, ws: web.WebSocketResponse, queue: EventQueue, client_id: str) -> None:
        self._ws = ws
        self._queue = queue
        self._client_id = client_id
        self._after: int | None = None  # None: from the last ack
        self._task: asyncio.Task[None] | None = None
        self._again = False

    def wake(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._send())
        else:
            self._again = True  # the running sender reads once more before it stops

    async def _send(self) -> None:
        try:
            while not self._ws.closed:
                self._again = False
                page = await self._queue.read(self._client_id, self._after, MAX_LIMIT)
                if page.events:
                    await self._ws.send_str(msgspec.json.encode(page).decode())
                self._after = int(page.next)
                if len(page.events) < MAX_LIMIT and not self._again:
                    return
        except Exception as exc:  # the client left mid-send, or the store failed a read
            log.warning("event_socket_send_failed", error=type(exc).__name__)
            if not self._ws.closed:
                await self._ws.close(code=WSCloseCode.INTERNAL_ERROR)
        finally:
            self._task = None

    async def stop(self) -> None:
        task = self._task
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
