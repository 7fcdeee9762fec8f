"""Delivery workers: outbox rows to the platform, in order per conversation, at least once.

Woken at once when an accepting unit commits (`wake`) here, or on another replica (the store's
`outbox` notification), polling as a fallback. A retryable
failure is retried with exponential backoff and full jitter; past the budget, or on a permanent
failure, the message is dead-lettered and its provider gets a `delivery_failed` event.
Consent is checked again just before delivery: a revocation after acceptance wins.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time

import msgspec
import structlog

from gateway import metrics
from gateway.config import RelayConfig
from gateway.platforms.base import (
    DeliveryError,
    Outgoing,
    PermanentDelivery,
    Platform,
    RetryableDelivery,
)
from gateway.service import outbox
from gateway.service.audit.log import AuditLog
from gateway.service.consent import ConsentRegistry
from gateway.service.event_types import DeliveryFailedEvent
from gateway.service.events import EventQueue
from gateway.store import Row, Store, Tx

log = structlog.get_logger(__name__)


def now_ms() -> int:
    return int(time.time() * 1000)


def message_type(row: Row) -> str:
    """`encrypted` or `plaintext` (the metrics label), from the stored payload's one key."""
    return "encrypted" if (row["payload"] or "").startswith('{"encrypted"') else "plaintext"


class DeliveryWorker:
    """Claims due outbox rows and delivers them; `start`/`stop` from a cleanup context."""

    def __init__(
        self,
        store: Store,
        platform: Platform,
        consent: ConsentRegistry,
        events: EventQueue,
        config: RelayConfig,
        *,
        audit_events: AuditLog | None = None,
        replica_id: str = "",
    ) -> None:
        self.store = store
        self.replica_id = replica_id
        self.platform = platform
        self.consent = consent
        self.events = events
        self.config = config
        self.audit_events = audit_events
        self.depth = 0
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._slots = asyncio.Semaphore(config.concurrency)

    def wake(self) -> None:
        """New work committed: claim now rather than at the next poll."""
        self.depth += 1
        self._wakeup.set()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Start the loop, first releasing the leases a crash of this process left behind.

        On SQLite that is every lease (one process); on PostgreSQL those of this replica id,
        which no other live process holds (Store.hold_exclusive).
        """
        if self.store.dialect == "sqlite":
            await self.store.write("outbox_release_leases", outbox.release_all)
        else:
            replica = self.replica_id

            async def release(tx: Tx) -> int:
                return await outbox.release_replica(tx, replica)

            await self.store.write("outbox_release_leases", release)
        await self.store.subscribe(outbox.TOPIC, lambda _: self._wakeup.set())
        await self._refresh_stats()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="relay-delivery")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                busy = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # the loop outlives any one round; the failure is logged
                log.exception("delivery_round_failed")
                busy = False
            if not busy:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), self.config.poll_interval_s)
                self._wakeup.clear()

    async def run_once(self) -> bool:
        """Claim one batch and deliver it; True if there was work."""
        self._wakeup.clear()
        lease_ms = int(self.config.lease_s * 1000)
        dialect, limit, replica = self.store.dialect, self.config.claim_batch, self.replica_id

        async def claim(tx: Tx) -> list[Row]:
            return await outbox.claim(tx, dialect, now_ms(), lease_ms, limit, replica)

        rows = await self.store.write("outbox_claim", claim)
        # Each row heads a different conversation: they may go out concurrently.
        await asyncio.gather(*(self._deliver(row) for row in rows))
        await self._refresh_stats()
        return bool(rows)

    async def _refresh_stats(self) -> None:
        depth, _ = await outbox.stats(self.store)
        self.depth = depth

    async def _deliver(self, row: Row) -> None:
        service = row["service"]
        item = Outgoing(
            id=row["message_id"],
            kind=row["kind"],
            service=service,
            sender=row["sender"],
            recipient=row["recipient"],
            sent_at=row["sent_at"],
            payload=msgspec.json.decode(row["payload"] or "{}"),
        )
        async with self._slots:
            try:
                if not await self.consent.allows(row["recipient"], row["client_id"]):
                    raise PermanentDelivery("recipient_unavailable")
                await self.platform.deliver(item)
            except RetryableDelivery as exc:
                metrics.DELIVERY_ATTEMPTS.labels(service, "retry").inc()
                await self._retry(row, exc)
            except PermanentDelivery as exc:
                metrics.DELIVERY_ATTEMPTS.labels(service, "permanent").inc()
                await self._fail(row, exc.reason)
            except Exception:
                # A connector bug: logged, retried like an outage rather than lost.
                log.exception("delivery_crashed", service=service)
                metrics.DELIVERY_ATTEMPTS.labels(service, "error").inc()
                await self._retry(row, DeliveryError("connector_error"))
            else:
                metrics.DELIVERY_ATTEMPTS.labels(service, "ok").inc()
                await self._delivered(row)

    async def _delivered(self, row: Row) -> None:
        at, dialect = now_ms(), self.store.dialect

        async def unit(tx: Tx) -> None:
            await outbox.finish(
                tx, row["seq"], row["message_id"], "delivered", at, dialect=dialect
            )
            await self._audit_in(tx, row, "message.deliver", direction="to_platform")

        await self.store.write("outbox_delivered", unit)
        if row["kind"] == "message":
            metrics.message_delivered(
                row["service"], message_type(row), "to_platform", row["accepted_at"]
            )

    async def _audit_in(self, tx: Tx, row: Row, action: str, **attrs: str) -> None:
        if self.audit_events is not None:
            await self.audit_events.event_in(
                tx,
                action=action,
                subjects=[row["sender"], row["recipient"]],
                attrs={"service": row["service"], "kind": row["kind"], **attrs},
            )

    def backoff_s(self, attempts: int) -> float:
        """Full jitter (AWS architecture blog, 'Exponential Backoff and Jitter')."""
        cap = min(self.config.retry_max_s, self.config.retry_base_s * 2 ** (attempts - 1))
        return random.uniform(self.config.retry_base_s / 2, max(cap, self.config.retry_base_s))

    async def _retry(self, row: Row, exc: DeliveryError) -> None:
        attempts = row["attempts"] + 1
        if attempts >= self.config.max_attempts:
            await self._fail(row, f"retries_exhausted:{exc.reason}")
            return
        at = now_ms() + int(self.backoff_s(attempts) * 1000)

        dialect, replica = self.store.dialect, self.replica_id

        async def unit(tx: Tx) -> None:
            await outbox.retry_later(
                tx, row["seq"], attempts, at, dialect=dialect, replica=replica
            )

        await self.store.write("outbox_retry", unit)
        log.info("delivery_retry", service=row["service"], attempts=attempts, reason=exc.reason)

    async def _fail(self, row: Row, reason: str) -> None:
        at, dialect = now_ms(), self.store.dialect
        event = DeliveryFailedEvent(
            message_id=row["client_msg_id"], gateway_id=row["message_id"], sender=row["sender"],
            recipient=row["recipient"], reason=reason, at=at,
        )  # fmt: skip

        async def unit(tx: Tx) -> None:
            await outbox.finish(tx, row["seq"], row["message_id"], "failed", at, dialect=dialect)
            await tx.execute(
                "INSERT INTO relay_dead_letters (message_id, service, attempts, reason, "
                "failed_at) VALUES ($1, $2, $3, $4, $5)",
                row["message_id"], row["service"], row["attempts"] + 1, reason, at,
            )  # fmt: skip
            await self._audit_in(tx, row, "message.deliver_failed", reason=reason)
            # Typing signals are ephemeral: nobody needs to hear one was lost.
            if row["kind"] != "typing":
                await self.events.append_in(tx, row["client_id"], event)

        await self.store.write("outbox_failed", unit)
        if row["kind"] == "message":
            metrics.MESSAGES_FAILED.labels(row["service"], message_type(row), "to_platform").inc()
        log.warning("delivery_failed", service=row["service"], reason=reason)
