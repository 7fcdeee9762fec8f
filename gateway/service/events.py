"""Per-provider event queues (DESIGN §4.6): at-least-once, each provider apart from the others.

Each provider's events are numbered 1, 2, 3... on their own (`gateway.store.events`); its
cursor is the number of the last event it has seen. An event leaves the queue only when
acknowledged (pull, WebSocket) or pushed with a 2xx (webhook). Waiters are woken when a unit
that appended for them commits, here or (through the store's `events` notification, `heard`)
on another replica; they also poll, in case a notification was lost.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import msgspec

from gateway.clock import now_ms
from gateway.errors import InvalidCursor
from gateway.service.event_types import Event
from gateway.service.periodic import wait_event
from gateway.store import Store, Tx
from gateway.store import events as stored

_encoder = msgspec.json.Encoder()
POLL_FALLBACK_S = 2.0
# How often event sockets' providers are checked for events no notification announced.
SWEEP_INTERVAL_S = 5.0
# The topic of Store notifications that a provider has new events (payload: its client id).
TOPIC = "events"


def parse_cursor(text: str | None, field: str) -> int | None:
    """A cursor is the decimal sequence of an event; empty means 'from the last ack'."""
    if text is None or text == "":
        return None
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise InvalidCursor("A cursor is the `next` value of an events page.", field=field)
    return int(text)


class EventPage(msgspec.Struct, frozen=True, kw_only=True):
    events: list[msgspec.Raw]
    next: str


class EventQueue:
    """Appends, reads and acknowledges provider events."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._signals: dict[str, asyncio.Event] = {}
        # Called with the client id after each commit that appended for it (webhook pusher).
        self.listeners: list[Callable[[str], None]] = []
        # Per provider, the wake-up callbacks of its open event sockets (`subscribe`).
        self._subscribers: dict[str, set[Callable[[], None]]] = {}
        # Per provider with subscribers, its newest event number at the last `sweep`.
        self._swept: dict[str, int] = {}

    def subscribe(self, client_id: str, wake: Callable[[], None]) -> None:
        """Call `wake()` whenever events for `client_id` may have arrived: a commit here that
        appended some, another replica's notification, or a `sweep` that saw its queue grow.
        A subscriber holds no task while nothing arrives (an idle event socket)."""
        self._subscribers.setdefault(client_id, set()).add(wake)

    def unsubscribe(self, client_id: str, wake: Callable[[], None]) -> None:
        subscribers = self._subscribers.get(client_id)
        if subscribers is not None:
            subscribers.discard(wake)
            if not subscribers:
                del self._subscribers[client_id]
                self._swept.pop(client_id, None)

    def _wake(self, client_id: str | None) -> None:
        if client_id is None:
            woken = [wake for group in self._subscribers.values() for wake in group]
        else:
            woken = list(self._subscribers.get(client_id, ()))
        for wake in woken:
            wake()

    async def sweep(self) -> None:
        """In case a notification was lost: wake the subscribers of each provider whose newest
        event moved since the last sweep (one indexed read per provider, not per socket)."""
        for client_id in list(self._subscribers):
            last = await stored.last_seq(self.store, client_id)
            if self._swept.get(client_id, last) != last:
                self._wake(client_id)
            if client_id in self._subscribers:
                self._swept[client_id] = last

    async def append_in(self, tx: Tx, client_id: str, event: Event | dict[str, Any]) -> None:
        """Append inside a write unit: the event commits (and wakes readers) with its cause.

        It is numbered when the unit's group-commit batch ends (`Tx.defer`), after every unit
        of the batch ran: a unit does not read back the events it appends.
        """
        body = _encoder.encode(event)
        type_ = str(
            event["type"] if isinstance(event, dict) else type(event).__struct_config__.tag
        )
        tx.defer(self._flush, (client_id, stored.NewEvent(type_, body.decode(), now_ms())))
        tx.on_commit(lambda: self._notify(client_id))
        tx.notify(TOPIC, client_id)

    async def _flush(self, tx: Tx, items: list[tuple[str, stored.NewEvent]]) -> None:
        """Number and insert a group-commit batch's events: per provider, one counter update
        and one multi-row insert, in the order the batch's units appended them."""
        per_provider: dict[str, list[stored.NewEvent]] = {}
        for client_id, event in items:
            per_provider.setdefault(client_id, []).append(event)
        # In client id order: two replicas' batches take the counters' row locks in one order.
        for client_id in sorted(per_provider):
            await stored.append_events(tx, client_id, per_provider[client_id])

    async def append(self, client_id: str, event: Event | dict[str, Any]) -> None:
        """Append in a write unit of its own; return once durable."""

        async def unit(tx: Tx) -> None:
            await self.append_in(tx, client_id, event)

        await self.store.write("event_append", unit)

    def _notify(self, client_id: str) -> None:
        signal = self._signals.pop(client_id, None)
        if signal is not None:
            signal.set()
        self._wake(client_id)
        for listener in self.listeners:
            listener(client_id)

    def heard(self, client_id: str | None) -> None:
        """Another replica appended for `client_id` (None: maybe for anyone): wake waiters.

        Only the long polls and WebSockets here: the webhook push of those events is the
        appending replica's (a pusher here still finds them at its next poll).
        """
        if client_id is None:
            signals, self._signals = list(self._signals.values()), {}
        else:
            signal = self._signals.pop(client_id, None)
            signals = [] if signal is None else [signal]
        for signal in signals:
            signal.set()
        self._wake(client_id)

    async def read(self, client_id: str, after: int | None, limit: int) -> EventPage:
        """Events after `after` (default: the last ack), oldest first, at most `limit`."""
        start = after if after is not None else await self.acked(client_id)
        rows = await stored.events_after(self.store, client_id, start, limit)
        events = [
            msgspec.Raw(b'{"event_id":"%d",%s' % (row.seq, row.body.encode()[1:])) for row in rows
        ]
        last = rows[-1].seq if rows else start
        return EventPage(events=events, next=str(last))

    async def wait(
        self, client_id: str, after: int | None, limit: int, wait_s: float
    ) -> EventPage:
        """`read`, waiting up to `wait_s` for a first event (long poll)."""
        deadline = time.monotonic() + wait_s
        while True:
            signal = self._signals.setdefault(client_id, asyncio.Event())
            page = await self.read(client_id, after, limit)
            remaining = deadline - time.monotonic()
            if page.events or remaining <= 0:
                return page
            await wait_event(signal, min(remaining, POLL_FALLBACK_S))

    async def acked(self, client_id: str) -> int:
        """The provider's acknowledged cursor (0 before its first ack)."""
        return await stored.acked_cursor(self.store, client_id)

    async def ack(self, client_id: str, cursor: int) -> None:
        """Drop the events up to `cursor`; a cursor past the newest event is refused."""
        at = now_ms()

        async def unit(tx: Tx) -> None:
            if not await stored.ack_events(tx, client_id, cursor, at):
                raise InvalidCursor(
                    "The cursor is past the newest event of this provider.", field="$.cursor"
                )

        await self.store.write("event_ack", unit)

    async def backlog(self, client_id: str) -> int:
        """How many events wait for this provider."""
        return await stored.count_backlog(self.store, client_id)

    async def pending_clients(self) -> list[str]:
        """Providers with events waiting (for the webhook pusher)."""
        return await stored.providers_with_events(self.store)
