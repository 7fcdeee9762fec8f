"""One provider's event WebSocket (`GET /v1/events/ws`, gateway.http.events) once upgraded:
event pages out when the provider's queue wakes it, acks and re-authentication in, closed by
its stream's end (suspension, shutdown) or its token's expiry. Served as a `WebSocket`
(gateway.http.websocket) outside aiohttp's request handling, so an idle socket is a few hundred
bytes and a timer: no request, no task.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import msgspec
import structlog
from aiohttp import WSCloseCode, web

from gateway.errors import GatewayError, ValidationFailed
from gateway.http.app_keys import AUTHENTICATOR, EVENT_STREAMS, EVENTS
from gateway.http.audit import audit_socket_ack
from gateway.http.auth import spend_app_limit
from gateway.http.websocket import CLOSE_GOING_AWAY, CLOSE_TIMEOUT_S, WebSocket
from gateway.service.event_streams import (
    CLOSE_AUTH_FAILED,
    CLOSE_SUSPENDED,
    CLOSE_TOKEN_EXPIRED,
    Stream,
)
from gateway.service.events import parse_cursor
from gateway.service.principal import Principal

log = structlog.get_logger(__name__)

# Events a page holds at most (the largest `limit` of GET /v1/events).
PAGE_EVENTS = 500
_CLOSE_REASONS = {
    CLOSE_GOING_AWAY: b"server shutting down",
    CLOSE_SUSPENDED: b"provider suspended",
    CLOSE_TOKEN_EXPIRED: b"access token expired",
    CLOSE_AUTH_FAILED: b"authentication failed",
}


class _WsMessage(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    ack: str | None = None
    auth: str | None = None


_ws_message = msgspec.json.Decoder(_WsMessage)
_WS_USAGE = 'expected {"ack": "<cursor>"} or {"auth": "<access token>"}'
_json = msgspec.json.Encoder()
# Client messages waiting for their answer before the socket stops reading.
_INBOX_MAX = 16


async def close_sockets(app: web.Application) -> None:
    """At shutdown, before requests drain: every event socket closes with 1001 (going away),
    and the closing handshakes get CLOSE_TIMEOUT_S to finish."""
    streams = app.get(EVENT_STREAMS)
    if streams is None:  # never started
        return
    streams.end_sockets(CLOSE_GOING_AWAY)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(streams.sockets_closed(), CLOSE_TIMEOUT_S)


class EventSocket(WebSocket):
    """One provider's event socket. Pages are sent when the event queue wakes it
    (EventQueue.subscribe): a task exists only while there is something to send or a client
    message to answer. It closes when its stream ends (suspension, another provider's
    token, shutdown) or its token expires (`deadline`), unless renewed by `{"auth": ...}`."""

    __slots__ = (
        "_after",
        "_again",
        "_app",
        "_inbox",
        "_reader",
        "_sender",
        "client_id",
        "principal",
        "request_id",
        "stream",
    )

    def __init__(
        self,
        app: web.Application,
        stream: Stream,
        principal: Principal,
        request_id: str,
        expires: int,
    ) -> None:
        super().__init__()
        self._app = app
        self.stream = stream
        self.client_id = stream.client_id
        self.principal = principal  # the socket's requests act as the upgrade's principal
        self.request_id = request_id
        self._after: int | None = None  # the last event sent; None: from the last ack
        self._again = False
        self._sender: asyncio.Task[None] | None = None
        self._inbox: list[str] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._expire_at(expires)

    def _expire_at(self, expires: int) -> None:
        self.deadline = self._loop.time() + (expires - time.time())

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._app[EVENTS].subscribe(self.client_id, self.wake)
        self.stream.on_end = self._ended
        if self.stream.is_ended:
            self._ended()
        else:
            self.wake()  # what is already queued (from the last ack)

    def closed(self) -> None:
        self._app[EVENTS].unsubscribe(self.client_id, self.wake)
        self.stream.on_end = None
        if self._sender is not None:
            self._sender.cancel()
        if self._reader is None:  # else the reader releases once its message is answered
            self._app[EVENT_STREAMS].release(self.stream)

    def expired(self) -> None:
        self.stream.end(CLOSE_TOKEN_EXPIRED)

    def _ended(self) -> None:
        code = self.stream.close_code
        self.close(code, _CLOSE_REASONS.get(code, b""))

    # Pages out.

    def wake(self) -> None:
        if self._sender is None:
            if self.is_open:
                self._sender = self._loop.create_task(self._send())
        else:
            self._again = True  # the running sender reads once more before it stops

    async def _send(self) -> None:
        _bind_log_context(self.request_id)
        queue = self._app[EVENTS]
        try:
            while self.is_open:
                self._again = False
                page = await queue.read(self.client_id, self._after, PAGE_EVENTS)
                if page.events:
                    self.send(_json.encode(page))
                    await self.drain()
                self._after = int(page.next)
                if len(page.events) < PAGE_EVENTS and not self._again:
                    return
        except Exception as exc:  # the client left mid-send, or the store failed a read
            log.warning("event_socket_send_failed", error=type(exc).__name__)
            self.close(WSCloseCode.INTERNAL_ERROR)
        finally:
            self._sender = None

    # Client messages in, answered one at a time in order.

    def received(self, text: str) -> None:
        if self._inbox is None:
            self._inbox = [text]
        else:
            self._inbox.append(text)
            if len(self._inbox) >= _INBOX_MAX:
                self.pause_reading()
        if self._reader is None:
            self._reader = self._loop.create_task(self._read())

    async def _read(self) -> None:
        _bind_log_context(self.request_id)
        try:
            while self._inbox:
                text = self._inbox.pop(0)
                if not self._inbox:
                    self._inbox = None
                    self.resume_reading()
                await self._handle(text)
        except Exception:
            log.exception("event_socket_message_failed")
            self.close(WSCloseCode.INTERNAL_ERROR)
        finally:
            self._inbox = None
            self._reader = None
            if not self.is_open and self._transport is None:  # closed meanwhile
                self._app[EVENT_STREAMS].release(self.stream)

    def _answer(self, answer: dict[str, object]) -> None:
        if self.is_open:
            self.send(_json.encode(answer))

    async def _handle(self, text: str) -> None:
        """Answer one client message: an ack or a re-authentication."""
        try:
            message = _ws_message.decode(text)
        except (msgspec.DecodeError, msgspec.ValidationError):
            self._answer({"error": _WS_USAGE})
            return
        try:
            if message.auth is not None:
                await self._reauthenticate(message.auth)
            elif message.ack is not None:
                await self._ack(message.ack)
            else:
                self._answer({"error": _WS_USAGE})
        except GatewayError as exc:  # a bad message answers on the socket, it does not close it
            answer: dict[str, object] = {"error": exc.detail, "type": exc.type}
            if "Retry-After" in exc.headers:
                answer["retry_after"] = int(exc.headers["Retry-After"])
            self._answer(answer)

    async def _ack(self, text: str) -> None:
        # Rate-limited and audited as `POST /v1/events/ack` is.
        app = self._app
        await spend_app_limit(app, "events", f"provider:{self.client_id}")
        cursor = parse_cursor(text, "ack")
        if cursor is None:
            raise ValidationFailed("`ack` must be a cursor.", field="ack")
        try:
            await app[EVENTS].ack(self.client_id, cursor)
        except GatewayError as exc:
            await audit_socket_ack(app, self.request_id, self.principal, exc.status, exc.type)
            raise
        await audit_socket_ack(app, self.request_id, self.principal, 200, None)

    async def _reauthenticate(self, token: str) -> None:
        principal, expires = await self._app[AUTHENTICATOR].authenticate_until(token)
        if principal.client_id != self.client_id or "events" not in principal.scopes:
            self.stream.end(CLOSE_AUTH_FAILED)
            return
        self._expire_at(expires)
        self.reschedule()
        self._answer({"auth": "ok", "expires_at": expires})


def _bind_log_context(request_id: str) -> None:
    """A socket's task logs under the request that opened the socket (a task starts with a
    copy of whatever context woke it)."""
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id, route="/v1/events/ws")
