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
    """One open stream: `ended` is set, with `close_code`, when it must stop; `on_end`, if
    set, is called then (a socket closes itself without a task waiting on `ended`)."""

    __slots__ = ("close_code", "ended", "on_end")

    def __init__(self) -> None:
        self.ended = asyncio.Event()
        self.close_code = 0
        self.on_end: Callable[[], None] | None = None

    def end(self, close_code: int) -> None:
        if not self.ended.is_set():
            self.close_code = close_code
            self.ended.set()
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
        # Called with the client id of a provider found suspended (the webhook pusher).
        self.listeners: list[Callable[[str], None]] = []

    async def active(self, client_id: str) -> bool:
        """Whether the provider may still be served events."""
        return await self._state(client_id) == "active"

    @contextlib.contextmanager
    def open(self, client_id: str, *, socket: bool = False) -> Iterator[Stream]:
        """Register a stream of `client_id` while the block runs; a socket counts to the cap."""
        if socket:
            if self._sockets.get(client_id, 0) >= self._max_sockets:
                raise Conflict(
                    f"This provider already has {self._max_sockets} event sockets open here; "
                    "close one first.",
                    max_sockets=self._max_sockets,
                )
            self._sockets[client_id] = self._sockets.get(client_id, 0) + 1
        stream = Stream()
        self._streams.setdefault(client_id, set()).add(stream)
        try:
            yield stream
        finally:
            streams = self._streams.get(client_id)
            if streams is not None:
                streams.discard(stream)
                if not streams:
                    del self._streams[client_id]
            if socket:
                left = self._sockets.pop(client_id, 1) - 1
                if left:
                    self._sockets[client_id] = left

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
