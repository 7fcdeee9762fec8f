"""A server WebSocket (RFC 6455) served apart from aiohttp's request handling once upgraded.

aiohttp keeps, for each WebSocket it serves, the parsed upgrade request, the connection's
handler and HTTP parser, two tasks (the connection's and the request handler's, with every
middleware frame between them) and a WebSocketResponse with its reader queue and writer:
about 20 KB a socket (bench/ws_memory_probe.py), whatever the socket does. A socket that is
mostly idle needs none of it. `accept` answers the upgrade through aiohttp (middlewares,
audit and log see a 101 as before); once aiohttp is done with the request, the connection is
taken from aiohttp's handler and given to a `WebSocket`: a protocol object of a few hundred
bytes, one timer, no task.

What it speaks: text and binary messages (fragmented or not) in, text messages out; pings
answered; a ping after `HEARTBEAT_S` without data from the client, the connection dropped
when no data follows within half of it; the closing handshake either way. No extension is
negotiated (no permessage-deflate: its zlib state would cost far more than the socket), as a
server may decline any (RFC 6455 §9.1).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import math
from typing import cast

from aiohttp import web
from aiohttp.http import WS_KEY
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage
from wsproto.extensions import Extension
from wsproto.frame_protocol import CloseReason, FrameDecoder, FrameProtocol, Opcode, RsvBits

from gateway.errors import BadRequest

# A ping after this long without data from the client; the connection is dropped when the
# client sends nothing within half of it after the ping (as aiohttp's `heartbeat`).
HEARTBEAT_S = 30.0
# How long a client has to answer our close frame before the connection is dropped.
CLOSE_TIMEOUT_S = 10.0
# The largest message a client may send (our clients send acks and tokens).
MAX_MESSAGE_BYTES = 64 * 1024

# Close codes (RFC 6455 §7.4.1).
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_INVALID_DATA = 1007
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL_ERROR = 1011

_OPEN, _CLOSING, _CLOSED = 0, 1, 2


def accept_headers(request: web.Request) -> dict[str, str]:
    """The 101 answer's headers to a valid WebSocket upgrade request; BadRequest otherwise."""
    headers = request.headers
    if headers.get("Upgrade", "").strip().lower() != "websocket":
        raise BadRequest("This endpoint takes a WebSocket upgrade (Upgrade: websocket).")
    if "upgrade" not in [t.strip() for t in headers.get("Connection", "").lower().split(",")]:
        raise BadRequest("A WebSocket upgrade needs `Connection: Upgrade`.")
    if headers.get("Sec-WebSocket-Version", "") not in ("13", "8", "7"):
        raise BadRequest("Only WebSocket version 13 is spoken (Sec-WebSocket-Version: 13).")
    key = headers.get("Sec-WebSocket-Key", "")
    try:
        valid = len(base64.b64decode(key)) == 16
    except binascii.Error:
        valid = False
    if not valid:
        raise BadRequest("`Sec-WebSocket-Key` must be 16 bytes in base64.")
    digest = hashlib.sha1(key.encode() + WS_KEY).digest()  # RFC 6455 §4.2.2
    return {
        "Upgrade": "websocket",
        "Connection": "upgrade",
        "Sec-WebSocket-Accept": base64.b64encode(digest).decode(),
    }


async def accept(
    request: web.Request, socket: WebSocket, headers: dict[str, str]
) -> web.StreamResponse:
    """Answer the upgrade with a 101 (with `headers`, from `accept_headers`) through aiohttp,
    and return it: once aiohttp is done with the request (middlewares, audit record, log
    line), the connection is taken from aiohttp and served by `socket`. If the client leaves
    before that, the socket is told (`connection_lost`, then `closed`).
    """
    handover = _Handover(socket)
    response = _Upgrade(headers, handover)
    try:
        await response.prepare(request)
    except BaseException:
        socket.connection_lost(None)
        raise
    if request.transport is None or request.transport.is_closing():
        socket.connection_lost(None)
        return response
    # From here aiohttp hands what the client sends to `handover` (which keeps it) and tells
    # it when the connection is lost.
    handover.handler = request.protocol
    request.protocol.set_parser(handover)  # type: ignore[arg-type]
    return response


class _Upgrade(web.StreamResponse):
    """The 101 answer; its end (aiohttp's last step with a request) hands the connection over."""

    def __init__(self, headers: dict[str, str], handover: _Handover) -> None:
        super().__init__(status=101, headers=headers)
        self.force_close()  # no keep-alive: the connection is not HTTP any more
        self._handover: _Handover | None = handover

    async def write_eof(self, data: bytes = b"") -> None:
        await super().write_eof(data)  # writes nothing: a 101 has no body
        handover, self._handover = self._handover, None
        if handover is not None:
            handover.attach()


class _Handover:
    """Stands in for aiohttp's WebSocket reader between the 101 and the handover: keeps what
    the client sends meanwhile, and tells the socket if the client leaves before."""

    __slots__ = ("data", "handler", "socket")

    def __init__(self, socket: WebSocket) -> None:
        self.socket: WebSocket | None = socket
        self.handler: web.RequestHandler | None = None
        self.data = bytearray()

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self.data += data
        return False, b""

    def feed_eof(self) -> None:  # aiohttp lost the connection before the handover
        socket, self.socket = self.socket, None
        if socket is not None:
            socket.connection_lost(None)

    def attach(self) -> None:
        socket, handler = self.socket, self.handler
        self.socket = self.handler = None
        if socket is None or handler is None:
            return
        transport = handler.transport
        if transport is None or transport.is_closing():
            socket.connection_lost(None)
            return
        transport.set_protocol(socket)
        # aiohttp's handler forgets the connection without closing it: it stops being one
        # of the server's connections, and its task ends.
        handler.transport = None
        handler.connection_lost(None)
        socket.connection_made(transport)
        if self.data:
            socket.data_received(bytes(self.data))
            self.data = bytearray()
        transport.resume_reading()  # in case aiohttp had paused it


class _MessageSizeLimit(Extension):
    """Refuses a frame longer than MAX_MESSAGE_BYTES on its header alone (1009), before its
    payload is buffered. Not an extension on the wire: nothing is negotiated, no bit is used."""

    name = "message-size-limit"

    def enabled(self) -> bool:  # wsproto consults enabled extensions only
        return True

    def offer(self) -> bool:
        return False

    def frame_inbound_header(
        self,
        proto: FrameDecoder | FrameProtocol,
        opcode: Opcode,
        rsv: RsvBits,
        payload_length: int,
    ) -> CloseReason | RsvBits:
        if payload_length > MAX_MESSAGE_BYTES:
            return CloseReason.MESSAGE_TOO_BIG
        return RsvBits(False, False, False)


_EXTENSIONS: list[Extension] = [_MessageSizeLimit()]  # stateless: shared by every socket


class WebSocket(asyncio.Protocol):
    """One server WebSocket on a connection of its own. Subclasses implement `received`
    (a text message) and `closed` (called once, when the connection is gone), and may set
    `deadline` (loop time; `expired` is called then)."""

    __slots__ = (
        "_conn",
        "_drained",
        "_fragments",
        "_loop",
        "_paused",
        "_ping_at",
        "_seen",
        "_size",
        "_state",
        "_timer",
        "_transport",
        "deadline",
    )

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        # RFC 6455 framing (after the handshake, which `accept` answers).
        self._conn = Connection(ConnectionType.SERVER, _EXTENSIONS)
        self._fragments: list[str] | None = None  # a fragmented text message's parts so far
        self._size = 0  # the bytes of the message being received so far
        self._state = _OPEN
        self._seen = self._loop.time()  # when the client last sent anything
        self._ping_at = 0.0  # when our unanswered ping was sent (0: none)
        self._timer: asyncio.TimerHandle | None = None
        self._paused = False
        self._drained: asyncio.Future[None] | None = None
        self.deadline = math.inf

    # To implement.

    def received(self, text: str) -> None:
        """A text message from the client."""

    def closed(self) -> None:
        """The connection is gone (or never came): called once."""

    def expired(self) -> None:
        """`deadline` has passed."""

    # Sending.

    @property
    def is_open(self) -> bool:
        return self._state == _OPEN and self._transport is not None

    def send(self, text: bytes | str) -> None:
        """Send a text message (`bytes`: already UTF-8); ConnectionResetError once closing."""
        if not self.is_open:
            raise ConnectionResetError("The WebSocket is closing.")
        assert self._transport is not None
        data = text.decode() if isinstance(text, bytes) else text
        self._transport.write(self._conn.send(TextMessage(data)))

    async def drain(self) -> None:
        """Wait while the connection's write buffer is above its high-water mark."""
        if self._paused:
            if self._drained is None:
                self._drained = self._loop.create_future()
            await asyncio.shield(self._drained)
        if self._state == _CLOSED:
            raise ConnectionResetError("The WebSocket is closed.")

    def close(self, code: int = CLOSE_NORMAL, reason: bytes = b"") -> None:
        """Start the closing handshake: the client has CLOSE_TIMEOUT_S to answer."""
        if not self.is_open:
            return
        assert self._transport is not None
        self._state = _CLOSING
        self._transport.write(self._conn.send(CloseConnection(code, reason.decode())))
        self._set_timer(self._loop.time() + CLOSE_TIMEOUT_S)

    def pause_reading(self) -> None:
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self._transport is not None and self._state != _CLOSED:
            self._transport.resume_reading()

    # asyncio.Protocol.

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._schedule()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._state == _CLOSED:
            return
        self._state = _CLOSED
        self._transport = None
        self._fragments = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.resume_writing()
        self.closed()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self._state == _CLOSED or self._conn.state is ConnectionState.CLOSED:
            return
        self._seen = self._loop.time()
        self._conn.receive_data(data)
        for event in self._conn.events():
            if isinstance(event, (TextMessage, BytesMessage)):
                self._message_received(event)
            elif isinstance(event, Ping):
                if self.is_open:
                    assert self._transport is not None
                    self._transport.write(self._conn.send(event.response()))
            elif isinstance(event, CloseConnection):
                # The client's close, or wsproto's verdict on a protocol violation (1002,
                # 1007, or 1009 from `_MessageSizeLimit`).
                self._close_received(event.code)
            # Pongs only count as data from the client (`_seen`).
            if self._state == _CLOSED or self._transport is None:
                return

    # Messages in.

    def _message_received(self, event: TextMessage | BytesMessage) -> None:
        data = event.data
        self._size += len(data.encode()) if isinstance(data, str) else len(data)
        if self._size > MAX_MESSAGE_BYTES:
            return self._fail(CLOSE_TOO_BIG)
        if isinstance(event, TextMessage):
            if not event.message_finished:
                if self._fragments is None:
                    self._fragments = []
                self._fragments.append(event.data)
                return
            fragments, self._fragments = self._fragments, None
            text = "".join(fragments) + event.data if fragments else event.data
        elif not event.message_finished:
            return
        else:  # Binary messages mean nothing here: ignored, as before.
            assert isinstance(event, BytesMessage)
            text = None
        self._size = 0
        if text is not None and self._state == _OPEN:
            self.received(text)

    def _close_received(self, code: int) -> None:
        transport = self._transport
        if transport is None:
            return
        if code == CloseReason.NO_STATUS_RCVD:
            code = CLOSE_NORMAL
        if self._state == _OPEN:  # the client closes (or broke the protocol): answer its code
            self._state = _CLOSING
            transport.write(self._conn.send(CloseConnection(code)))
        transport.close()

    def _fail(self, code: int) -> None:
        """A protocol violation: close with `code` without waiting for an answer."""
        transport = self._transport
        if transport is None:
            return
        if self._state == _OPEN:
            self._state = _CLOSING
            transport.write(self._conn.send(CloseConnection(code)))
        transport.close()

    # The timer: heartbeat, deadline, closing handshake.

    def _set_timer(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_at(when, self._tick)

    def _schedule(self) -> None:
        """Set the timer to the next heartbeat check or the deadline, whichever is first."""
        due = self._ping_at + HEARTBEAT_S / 2 if self._ping_at else self._seen + HEARTBEAT_S
        self._set_timer(min(due, self.deadline))

    def _tick(self) -> None:
        self._timer = None
        transport = self._transport
        if transport is None:
            return
        if self._state == _CLOSING:  # the client did not answer our close
            transport.abort()
            return
        now = self._loop.time()
        if now >= self.deadline:
            self.deadline = math.inf
            self.expired()
            if not self.is_open:
                return
        if self._ping_at and self._seen >= self._ping_at:
            self._ping_at = 0.0  # the client answered (or sent something)
        if self._ping_at:
            if now >= self._ping_at + HEARTBEAT_S / 2:
                transport.abort()  # gone without a word
                return
        elif now >= self._seen + HEARTBEAT_S:
            transport.write(self._conn.send(Ping()))
            self._ping_at = now
        self._schedule()

    def reschedule(self) -> None:
        """`deadline` changed: take it into account."""
        if self.is_open:
            self._schedule()
