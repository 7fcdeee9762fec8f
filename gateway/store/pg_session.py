"""PostgreSQL: a replica's own session, for what lives as long as the process does.

One dedicated connection (never the pooled readers, never the group-commit writer) holds:

- session-level advisory locks that say "this replica is alive" (`hold`): one replica id,
  one audit chain. PostgreSQL drops them when the connection ends, so a process killed with
  SIGKILL frees them the moment the kernel closes its socket;
- LISTEN on the schema's channels (`subscribe`): other replicas' commits wake local waiters
  (new events, new outbox rows, a provider suspended) at once instead of at the next poll.

The connection is re-made when it drops: LISTENs are renewed, locks taken again (a lock that
another process took meanwhile makes the session `lost`, so readiness fails and the
orchestrator restarts this replica), and every subscriber is called with `None`, meaning
"notifications may have been missed: look again".
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import asyncpg
import structlog

from gateway.store.base import StoreError

log = structlog.get_logger(__name__)

# Advisory lock class of held names (the migration lock is 0x646D6167, "dmag").
HOLD_LOCK = 0x646D6172  # "dmar"
HOLD_SQL = "SELECT pg_try_advisory_lock($1, hashtext(current_schema() || ':' || $2))"
RECONNECT_MAX_S = 5.0
# How long `hold` waits for PostgreSQL to notice that a killed holder's connection is gone.
HOLD_WAIT_S = 5.0

Callback = Callable[[str | None], None]


def channel_name(tag: str, topic: str) -> str:
    """The LISTEN/NOTIFY channel of `topic` for the schema whose md5 starts with `tag`.

    Channels are database-wide; the schema's tag keeps gateways in other schemas of the same
    database (tests, staging next to production) from waking each other.
    """
    return f"dmag_{topic}_{tag}"


class ReplicaSession:
    """The dedicated connection: held advisory locks and LISTEN, re-made when it drops."""

    def __init__(
        self,
        connect: Callable[[], Awaitable[asyncpg.Connection]],
        tag: str,
        own_pid: Callable[[], int | None],
        *,
        hold_wait_s: float | None = None,
    ) -> None:
        self._connect = connect
        self._tag = tag
        self._own_pid = own_pid
        self._hold_wait_s = HOLD_WAIT_S if hold_wait_s is None else hold_wait_s
        self._conn: asyncpg.Connection | None = None
        self._held: list[str] = []
        self._subscribers: dict[str, list[Callback]] = {}
        self._dropped = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        # Why this session can no longer vouch for its locks; None while it can.
        self.lost: str | None = None

    async def _ensure(self) -> asyncpg.Connection:
        if self._conn is None:
            self._conn = await self._open()
            self._task = asyncio.get_running_loop().create_task(
                self._keep(), name="postgres-session"
            )
        return self._conn

    async def _open(self) -> asyncpg.Connection:
        conn = await self._connect()
        conn.add_termination_listener(lambda _: self._dropped.set())
        for topic in self._subscribers:
            await conn.add_listener(channel_name(self._tag, topic), self._on_notify)
        return conn

    async def hold(self, name: str) -> None:
        """Take the advisory lock `name` for the life of this process, or raise StoreError.

        A lock a killed process held is freed when its connection ends, which PostgreSQL may
        notice a moment later: retry for `hold_wait_s` before giving up.
        """
        conn = await self._ensure()
        deadline = asyncio.get_running_loop().time() + self._hold_wait_s
        while not await conn.fetchval(HOLD_SQL, HOLD_LOCK, name):
            if asyncio.get_running_loop().time() >= deadline:
                raise StoreError(f"{name} is held by another live gateway process")
            await asyncio.sleep(0.1)
        self._held.append(name)

    async def subscribe(self, topic: str, callback: Callback) -> None:
        """Call `callback(payload)` on each notification of `topic` from another process."""
        conn = await self._ensure()
        first = topic not in self._subscribers
        self._subscribers.setdefault(topic, []).append(callback)
        if first:
            await conn.add_listener(channel_name(self._tag, topic), self._on_notify)

    def _on_notify(self, conn: object, pid: int, channel: str, payload: str) -> None:
        if pid == self._own_pid():
            return  # our own commit: local waiters were woken by on_commit already
        topic = channel[len("dmag_") : -len(self._tag) - 1]
        self._call(topic, payload)

    def _call(self, topic: str | None, payload: str | None) -> None:
        topics = list(self._subscribers) if topic is None else [topic]
        for name in topics:
            for callback in self._subscribers.get(name, []):
                try:
                    callback(payload)
                except Exception:
                    log.exception("store_notify_callback_failed", topic=name)

    async def _keep(self) -> None:
        """Re-make the connection whenever it drops (LISTENs, locks), then wake everyone."""
        delay = 0.1
        while not self._closed:
            await self._dropped.wait()
            self._dropped.clear()
            if self._closed:
                return
            log.warning("store_session_dropped")
            while not self._closed:
                try:
                    self._conn = await self._open()
                    for name in self._held:
                        if not await self._conn.fetchval(HOLD_SQL, HOLD_LOCK, name):
                            self.lost = f"{name} was taken by another process"
                            log.error("store_session_lock_lost", lock=name)
                    break
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RECONNECT_MAX_S)
            delay = 0.1
            self._call(None, None)  # anything may have happened while we were away

    async def close(self) -> None:
        """Release the locks (by closing the connection) and stop listening."""
        self._closed = True
        self._dropped.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._conn is not None and not self._conn.is_closed():
            try:
                await self._conn.close(timeout=5)
            except (OSError, asyncpg.InterfaceError, TimeoutError):
                self._conn.terminate()
