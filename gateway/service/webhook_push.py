"""Webhook push of provider events (DESIGN §4.6): signed batches, acknowledged by a 2xx.

`X-Interop-Signature: t=<unix>,v1=<hex HMAC-SHA256(webhook_secret, "<t>." + body)>` (the
scheme Stripe and others use: the timestamp inside the MAC bounds replays). A batch keeps its
`txn_id` across retries so the provider can drop a duplicate. Each provider is pushed by its
own task with its own backoff: a slow or absent endpoint holds up nobody else.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import random
import time
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import aiohttp
import msgspec
import structlog

from gateway import metrics
from gateway.config import RelayConfig
from gateway.service.egress import DestinationRefused, Egress
from gateway.service.event_streams import EventStreams
from gateway.service.events import EventQueue
from gateway.service.periodic import wait_event
from gateway.service.providers import WebhookTarget

log = structlog.get_logger(__name__)


# The provider registry's answer for a client id (None: the provider pulls instead).
WebhookTargets = Callable[[str], Awaitable[WebhookTarget | None]]


class _Push(msgspec.Struct, frozen=True, kw_only=True):
    txn_id: str
    events: list[msgspec.Raw]


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The X-Interop-Signature header value for `body` sent at `timestamp`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


class WebhookPusher:
    """Pushes each provider's queued events to its webhook until acknowledged."""

    def __init__(
        self,
        queue: EventQueue,
        targets: WebhookTargets,
        config: RelayConfig,
        egress: Egress,
        streams: EventStreams,
    ) -> None:
        self.queue = queue
        self.streams = streams
        self.targets = targets
        self.config = config
        self.egress = egress
        self._wakeup = asyncio.Event()
        self._pending: set[str] = set()
        self._busy: dict[str, asyncio.Task[None]] = {}
        self._not_before: dict[str, tuple[float, int]] = {}
        self._task: asyncio.Task[None] | None = None
        queue.listeners.append(self._appended)
        streams.listeners.append(self._suspended)

    def _appended(self, client_id: str) -> None:
        self._pending.add(client_id)
        self._wakeup.set()

    def _suspended(self, client_id: str) -> None:
        # A push under way stops at once; later ones check the provider's state first.
        task = self._busy.get(client_id)
        if task is not None:
            task.cancel()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="webhook-push")

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._busy.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        polled = 0.0
        while True:
            try:
                now = time.monotonic()
                if now - polled >= self.config.poll_interval_s:
                    # Events appended by other replicas, or left from before a restart.
                    self._pending.update(await self.queue.pending_clients())
                    polled = now
                for client_id in list(self._pending):
                    self._maybe_push(client_id, now)
            except Exception:  # the loop outlives any one round; the failure is logged
                log.exception("webhook_round_failed")
            await wait_event(self._wakeup, self.config.poll_interval_s / 4)
            self._wakeup.clear()

    def _maybe_push(self, client_id: str, now: float) -> None:
        if client_id in self._busy or self._not_before.get(client_id, (0.0, 0))[0] > now:
            return
        self._pending.discard(client_id)
        task = asyncio.get_running_loop().create_task(self._push(client_id))
        self._busy[client_id] = task
        task.add_done_callback(lambda _: self._done(client_id))

    def _done(self, client_id: str) -> None:
        self._busy.pop(client_id, None)
        self._wakeup.set()

    async def _push(self, client_id: str) -> None:
        try:
            target = await self.targets(client_id)
            if target is None or not await self.streams.active(client_id):
                return  # suspended: its events wait in the queue until it is resumed
            page = await self.queue.read(client_id, None, self.config.push_batch)
            if not page.events:
                return
            first = int(msgspec.json.decode(page.events[0])["event_id"])
            body = msgspec.json.encode(
                _Push(txn_id=f"txn_{first}_{page.next}", events=page.events)
            )
            if await self._post(client_id, target, body):
                await self.queue.ack(client_id, int(page.next))
                self._not_before.pop(client_id, None)
                metrics.WEBHOOK_PUSHES.labels("ok").inc()
                self._pending.add(client_id)  # there may be more than one batch
            else:
                self._back_off(client_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("webhook_push_failed")
            self._back_off(client_id)

    async def _post(self, client_id: str, target: WebhookTarget, body: bytes) -> bool:
        headers = {
            "Content-Type": "application/json",
            "X-Interop-Signature": signature(target.secret, int(time.time()), body),
        }
        host = urlsplit(target.url).hostname
        try:
            status = await self.egress.post(
                target.url, data=body, headers=headers, timeout_s=self.config.push_timeout_s
            )
        except DestinationRefused as exc:
            log.warning("webhook_push_refused", client_id=client_id, host=host, reason=exc.reason)
            return False
        except (aiohttp.ClientError, TimeoutError) as exc:
            reason = type(exc).__name__
            log.warning("webhook_push_failed", client_id=client_id, host=host, reason=reason)
            return False
        if not 200 <= status < 300:  # a redirect too: it is not followed
            reason = f"status {status}"
            log.warning("webhook_push_failed", client_id=client_id, host=host, reason=reason)
            return False
        return True

    def _back_off(self, client_id: str) -> None:
        failures = self._not_before.get(client_id, (0.0, 0))[1] + 1
        cap = min(self.config.retry_max_s, self.config.retry_base_s * 2 ** (failures - 1))
        delay = random.uniform(cap / 2, cap)
        self._not_before[client_id] = (time.monotonic() + delay, failures)
        self._pending.add(client_id)
        metrics.WEBHOOK_PUSHES.labels("retry").inc()
        log.info("webhook_push_retry", failures=failures)
