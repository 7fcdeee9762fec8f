"""Event streams open to providers on this replica (WebSockets, long polls), and their end.

A suspension stops at the door for new requests (authentication reads the provider's state);
this registry ends what is already open: sockets close, long polls return, webhook pushes under
way are cancelled. It learns of a state change from the provider registry at once on the replica
that made it and through the store's `providers` notification on the others (`changed`); each
change is checked against storage before anything is ended, so a resume ends nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator

import structlog

from gateway.errors import Conflict

log = structlog.get_logger(__name__)

# WebSocket close codes of the private range (RFC 6455 §7.4.2), also given in the README.
CLOSE_SUSPENDED = 4001
CLOSE_TOKEN_EXPIRED = 4002
CLOSE_AUTH_FAILED = 4003

# Open event sockets per provider and replica: each holds a connection and a reader task.
MAX_SOCKETS = 8

# The provider registry's state of a client id (None: no such provider).
ProviderState = Callable[[str], Awaitable[str | None]]


class Stream:
    """One open stream of `client_id`: it ends, with `close_code`, when it must stop. A long
    poll waits for that (`wait_ended`); a socket sets `on_end`, called then, so that no task
    waits while the socket is idle."""

    __slots__ = ("_ended", "client_id", "close_code", "on_end", "socket")

    def __init__(self, client_id: str, socket: bool) -> None:
        self.client_id = client_id
        self.socket = socket
        self.close_code = 0
        self.on_end: Callable[[], None] | None = None
        self._ended: asyncio.Event | None = None  # made by the first waiter only

    @property
    def is_ended(self) -> bool:
        return self.close_code != 0

    async def wait_ended(self) -> None:
        if self.close_code:
            return
        if self._ended is None:
            self._ended = asyncio.Event()
        await self._ended.wait()

    def end(self, close_code: int) -> None:
        if not self.close_code:
            self.close_code = close_code
            if self._ended is not None:
                self._ended.set()
            if self.on_end is not None:
                self.on_end()


class EventStreams:
    """Open streams per provider, a cap on its sockets, and their end on suspension."""

    def __init__(self, state: ProviderState, *, max_sockets: int) -> None:
        self._state = state
        self._max_sockets = max_sockets
        self._streams: dict[str, set[Stream]] = {}
        self._sockets: dict[str, int] = {}
        self._checks: set[asyncio.Task[None]] = set()
        self._no_sockets: asyncio.Event | None = None  # set when the last socket goes
        # Called with the client id of a provider found suspended (the webhook pusher).
        self.listeners: list[Callable[[str], None]] = []

    async def active(self, client_id: str) -> bool:
        """Whether the provider may still be served events."""
        return await self._state(client_id) == "active"

    def register(self, client_id: str, *, socket: bool = False) -> Stream:
        """A stream of `client_id`, registered until `release`; a socket counts to the cap."""
        if socket:
            if self._sockets.get(client_id, 0) >= self._max_sockets:
                raise Conflict(
                    f"This provider already has {self._max_sockets} event sockets open here; "
                    "close one first.",
                    max_sockets=self._max_sockets,
                )
            self._sockets[client_id] = self._sockets.get(client_id, 0) + 1
        stream = Stream(client_id, socket)
        self._streams.setdefault(client_id, set()).add(stream)
        return stream

    def release(self, stream: Stream) -> None:
        client_id = stream.client_id
        streams = self._streams.get(client_id)
        if streams is None or stream not in streams:
            return
        streams.discard(stream)
        if not streams:
            del self._streams[client_id]
        if stream.socket:
            left = self._sockets.pop(client_id, 1) - 1
            if left:
                self._sockets[client_id] = left
            elif not self._sockets and self._no_sockets is not None:
                self._no_sockets.set()

    @contextlib.contextmanager
    def open(self, client_id: str, *, socket: bool = False) -> Iterator[Stream]:
        """Register a stream of `client_id` while the block runs; a socket counts to the cap."""
        stream = self.register(client_id, socket=socket)
        try:
            yield stream
        finally:
            self.release(stream)

    async def sockets_closed(self) -> None:
        """Return once no socket is registered here."""
        while self._sockets:
            self._no_sockets = asyncio.Event()
            await self._no_sockets.wait()

    def end_sockets(self, close_code: int) -> None:
        """End every socket here (the server is stopping); long polls run on."""
        for streams in list(self._streams.values()):
            for stream in list(streams):
                if stream.socket:
                    stream.end(close_code)

    def changed(self, client_id: str | None) -> None:
        """A provider's state changed (None: maybe anyone's): end its streams if not active."""
        clients = list(self._streams) if client_id is None else [client_id]
        for client in clients:
            task = asyncio.get_running_loop().create_task(self._check(client))
            self._checks.add(task)
            task.add_done_callback(self._checks.discard)

    async def _check(self, client_id: str) -> None:
        try:
            if await self.active(client_id):
                return
        except Exception:  # storage unreachable: the streams' own polls look again
            log.exception("event_stream_check_failed")
            return
        self.end(client_id, CLOSE_SUSPENDED)

    def end(self, client_id: str, close_code: int) -> None:
        """End every stream of `client_id` here, and stop its pushes."""
        for stream in list(self._streams.get(client_id, ())):
            stream.end(close_code)
        for listener in self.listeners:
            listener(client_id)
        log.info("event_streams_ended", close_code=close_code)

    async def close(self) -> None:
        """Wait for the checks under way (at shutdown)."""
        for task in list(self._checks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
