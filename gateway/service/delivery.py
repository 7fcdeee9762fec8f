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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import structlog

from gateway import metrics
from gateway.clock import now_ms
from gateway.config import RelayConfig
from gateway.platforms.base import (
    DeliveryError,
    GroupOutgoing,
    Outgoing,
    PermanentDelivery,
    Platform,
    RetryableDelivery,
    provider_of,
)
from gateway.service.audit.log import AuditLog
from gateway.service.consent import ConsentRegistry
from gateway.service.event_types import DeliveryFailedEvent
from gateway.service.events import EventQueue
from gateway.service.payload_seal import PayloadSealer, PayloadUnreadable
from gateway.service.periodic import wait_event
from gateway.store import Store, Tx, is_lock_not_available, outbox
from gateway.store.outbox import Claimed

log = structlog.get_logger(__name__)
# How often the outbox is counted (other replicas' work); in between, counted in memory.
STATS_EVERY_S = 1.0

# Tries at a unit whose claimed row another replica's transaction holds for a moment.
LOCKED_ATTEMPTS = 50

# Rounds being delivered at once (each on conversations of its own; `concurrency` bounds the
# attempts in flight across them).
ROUNDS_IN_FLIGHT = 2


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one claimed row in a round: delivered, failed, retry or release."""

    row: Claimed
    status: str
    reason: str = ""
    attempts: int = 0
    at: int = 0
    # The metrics label: `encrypted` or `plaintext`, known once the payload is opened.
    type_: str = "plaintext"

    @property
    def finished(self) -> bool:
        """It left the outbox."""
        return self.status in ("delivered", "failed")


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
        audit_events: AuditLog,
        replica_id: str = "",
        sealer: PayloadSealer,
    ) -> None:
        self.store = store
        self.sealer = sealer
        self.replica_id = replica_id
        self.platform = platform
        self.consent = consent
        self.events = events
        self.config = config
        self.audit_events = audit_events
        self.depth = 0
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._slots = asyncio.Semaphore(config.concurrency)
        self._stats_due = 0.0
        self._after = ""

    def wake(self) -> None:
        """New work committed: claim now rather than at the next poll."""
        self.depth += 1
        self._wakeup.set()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _release_leases(self) -> int:
        """Hand this process's claims back to the outbox (see outbox.release_own)."""
        replica = self.replica_id

        async def release(tx: Tx) -> int:
            return await outbox.release_own(tx, replica)

        return await self.store.write("outbox_release_leases", release)

    async def start(self) -> None:
        """Start the loop, first releasing the leases a crash of this process left behind."""
        await self._release_leases()
        await self.store.subscribe(outbox.TOPIC, lambda _: self._wakeup.set())
        await self._refresh_stats()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="relay-delivery")

    async def stop(self, drain_s: float = 0.0) -> None:
        """Claim nothing more; give deliveries under way `drain_s`; hand the rest back.

        Released leases let another replica (or this one's next start) deliver those rows at
        once instead of after `lease_s`; a delivery cut short is repeated (at least once).
        """
        if self._task is None:
            return
        self._stopping = True
        self._wakeup.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._task), drain_s)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        try:
            released = await self._release_leases()
        except Exception:  # storage already gone: the leases then expire after lease_s
            log.warning("delivery_leases_not_released", exc_info=True)
            return
        log.info("delivery_stopped", leases_released=released)

    async def _run(self) -> None:
        """Claim a round while fewer than ROUNDS_IN_FLIGHT are being delivered, so that the
        next round's conversations go out while a round's slowest run ends and its outcomes
        commit. A conversation with a run in flight is not claimable (its head is leased):
        rounds never share a conversation, and order within each holds."""
        rounds: set[asyncio.Task[int]] = set()
        try:
            while not self._stopping:
                if len(rounds) >= ROUNDS_IN_FLIGHT:
                    await asyncio.wait(rounds, return_when=asyncio.FIRST_COMPLETED)
                    continue
                try:
                    rows = await self._claim()
                except asyncio.CancelledError:
                    raise
                except Exception:  # the loop outlives any one round; the failure is logged
                    log.exception("delivery_round_failed")
                    rows = []
                if rows:
                    task = asyncio.get_running_loop().create_task(self._round_logged(rows))
                    rounds.add(task)
                    task.add_done_callback(rounds.discard)
                    continue
                if rounds:
                    # Nothing claimable beside the rounds under way: the end of one (its
                    # conversations' next rows become claimable, and new work is looked for).
                    await asyncio.wait(rounds, return_when=asyncio.FIRST_COMPLETED)
                else:
                    await wait_event(self._wakeup, self.config.poll_interval_s)
            if rounds:  # stopping: the rounds under way finish (stop() bounds the wait)
                await asyncio.gather(*rounds)
        finally:
            for task in rounds:
                task.cancel()
            await asyncio.gather(*rounds, return_exceptions=True)

    async def _round_logged(self, rows: list[Claimed]) -> int:
        try:
            return await self._deliver_round(rows)
        except asyncio.CancelledError:
            raise
        except Exception:  # the loop outlives any one round; the failure is logged
            log.exception("delivery_round_failed")
            return 0

    async def run_once(self) -> bool:
        """Claim runs of conversations, deliver them, record every outcome in one unit."""
        rows = await self._claim()
        await self._deliver_round(rows)
        return bool(rows)

    async def _claim(self) -> list[Claimed]:
        """Lease the next round's runs (up to claim_per_conversation rows of each conversation,
        claim_batch in all), starting after the conversation the last round ended with."""
        self._wakeup.clear()
        lease_ms = int(self.config.lease_s * 1000)
        limit, replica = self.config.claim_batch, self.replica_id
        per_conversation = self.config.claim_per_conversation

        after = self._after

        async def claim(tx: Tx) -> list[Claimed]:
            return await outbox.claim(
                tx, now_ms(), lease_ms, limit, replica,
                per_conversation=per_conversation, after=after,
            )  # fmt: skip

        if self._stopping:
            return []
        rows = await self.store.write("outbox_claim", claim)
        # The next round starts after the last conversation this one took: round robin.
        self._after = rows[-1].conversation if rows else ""
        return rows

    async def _deliver_round(self, rows: list[Claimed]) -> int:
        """Deliver a claimed round and record its outcomes; how many rows it finished."""
        runs: dict[str, list[Claimed]] = {}
        for row in rows:
            runs.setdefault(row.conversation, []).append(row)
        # Conversations go out concurrently; within one, in order, stopping at a retry.
        done = await asyncio.gather(*(self._deliver_run(run) for run in runs.values()))
        outcomes = [outcome for run in done for outcome in run]
        if outcomes:
            await self._record(outcomes)
        finished = sum(o.finished for o in outcomes)
        await self._refresh_stats(finished)
        return finished

    async def _refresh_stats(self, finished: int = 0) -> None:
        # Counted in memory between counts; the count (other replicas' work) once a second.
        self.depth = max(0, self.depth - finished)
        if time.monotonic() >= self._stats_due:
            self._stats_due = time.monotonic() + STATS_EVERY_S
            depth, oldest = await outbox.stats(self.store)
            self.depth = depth
            # Counted after this round's outcomes committed: what is not in the outbox is done.
            await self.sealer.destroy_delivered(oldest, now_ms())

    async def _deliver_run(self, run: list[Claimed]) -> list[Outcome]:
        outcomes = []
        for i, row in enumerate(run):
            outcome = await self._attempt(row)
            outcomes.append(outcome)
            if outcome.status == "retry":
                # Order: what follows waits for this one; it is given back untried.
                outcomes.extend(Outcome(r, "release") for r in run[i + 1 :])
                break
        return outcomes

    async def _attempt(self, row: Claimed) -> Outcome:
        service = row.service
        try:
            payload = msgspec.json.decode(
                await self.sealer.open(row.message_id, row.payload or "{}")
            )
        except PayloadUnreadable as exc:
            log.error("payload_unreadable", service=service, reason=str(exc))
            return Outcome(row, "failed", str(exc))
        type_ = "encrypted" if "encrypted" in payload else "plaintext"
        async with self._slots:
            try:
                if row.member is not None:
                    await self._deliver_group(row, payload)
                else:
                    if not await self.consent.allows(row.recipient, row.client_id):
                        raise PermanentDelivery("recipient_unavailable")
                    await self.platform.deliver(_outgoing(row, payload))
            except RetryableDelivery as exc:
                metrics.DELIVERY_ATTEMPTS.labels(service, "retry").inc()
                return self._retry(row, exc, type_)
            except PermanentDelivery as exc:
                metrics.DELIVERY_ATTEMPTS.labels(service, "permanent").inc()
                return Outcome(row, "failed", exc.reason, type_=type_)
            except Exception:
                # A connector bug: logged, retried like an outage rather than lost.
                log.exception("delivery_crashed", service=service)
                metrics.DELIVERY_ATTEMPTS.labels(service, "error").inc()
                return self._retry(row, DeliveryError("connector_error"), type_)
            metrics.DELIVERY_ATTEMPTS.labels(service, "ok").inc()
            return Outcome(row, "delivered", type_=type_)

    async def _deliver_group(self, row: Claimed, payload: dict[str, Any]) -> None:
        """One group item for one platform member (DESIGN §4.10)."""
        assert row.member is not None
        provider = provider_of(row.sender)
        # A message or key from a provider's user: the member's consent to it still holds.
        if (
            row.kind != "group_membership"
            and provider is not None
            and not await self.consent.allows(row.member, provider)
        ):
            raise PermanentDelivery("recipient_unavailable")
        if row.kind == "room_key":
            share = payload.get("shares", {}).get(row.member)
            if share is None:
                raise PermanentDelivery("no_share_for_member")
            payload = {"session_id": payload["session_id"], "encrypted": share}
        assert row.kind in ("group_message", "room_key", "group_membership")
        item = GroupOutgoing(
            id=row.message_id, kind=row.kind, service=row.service, group=row.recipient,
            sender=row.sender, recipient=row.member, sent_at=row.sent_at, payload=payload,
        )  # fmt: skip
        await self.platform.deliver_group(item)

    def _retry(self, row: Claimed, exc: DeliveryError, type_: str) -> Outcome:
        attempts = row.attempts + 1
        if attempts >= self.config.max_attempts:
            return Outcome(row, "failed", f"retries_exhausted:{exc.reason}", type_=type_)
        at = now_ms() + int(self.backoff_s(attempts) * 1000)
        return Outcome(row, "retry", exc.reason, attempts=attempts, at=at, type_=type_)

    async def _write_own(self, name: str, unit: Callable[[Tx], Awaitable[None]]) -> None:
        """Write a unit touching claimed rows; another replica's brief lock on one: again."""
        for attempt in range(LOCKED_ATTEMPTS):
            try:
                await self.store.write(name, unit)
                return
            except Exception as exc:
                if not is_lock_not_available(exc) or attempt == LOCKED_ATTEMPTS - 1:
                    raise
            await asyncio.sleep(random.uniform(0.005, 0.02))

    async def _record(self, outcomes: list[Outcome]) -> None:
        """Every outcome of a round in one write unit (one commit, not several per message)."""
        at, replica = now_ms(), self.replica_id

        async def unit(tx: Tx) -> None:
            # The round's delivered 1:1 items finish together (one statement on PostgreSQL).
            delivered = [
                (o.row.seq, o.row.message_id)
                for o in outcomes
                if o.status == "delivered" and o.row.member is None
            ]
            await outbox.finish_many(tx, delivered, "delivered", at)
            for o in outcomes:
                row = o.row
                if o.status == "delivered":
                    if row.member is not None:
                        await outbox.finish(
                            tx, row.seq, row.message_id, "delivered", at, group=True
                        )
                    await self._audit_in(tx, row, "message.deliver", direction="to_platform")
                elif o.status == "failed":
                    await self._fail_in(tx, row, o.reason, at)
                elif o.status == "retry":
                    await outbox.retry_later(tx, row.seq, o.attempts, o.at, replica=replica)
                else:
                    await outbox.release(tx, row.seq, replica=replica)

        await self._write_own("outbox_outcomes", unit)
        for o in outcomes:
            self._report(o)

    def _report(self, o: Outcome) -> None:
        row = o.row
        if o.status == "delivered" and row.kind == "message":
            metrics.message_delivered(row.service, o.type_, "to_platform", row.accepted_at)
        elif o.status == "failed":
            if row.kind == "message":
                metrics.MESSAGES_FAILED.labels(row.service, o.type_, "to_platform").inc()
            log.warning("delivery_failed", service=row.service, reason=o.reason)
        elif o.status == "retry":
            log.info("delivery_retry", service=row.service, attempts=o.attempts, reason=o.reason)

    async def _audit_in(self, tx: Tx, row: Claimed, action: str, **attrs: str) -> None:
        # A group item: its sender, the member it went to, and the group.
        subjects = [row.sender, row.recipient] if row.member is None else [
            row.sender, row.member, row.recipient,
        ]  # fmt: skip
        await self.audit_events.event_in(
            tx,
            action=action,
            subjects=subjects,
            attrs={"service": row.service, "kind": row.kind, **attrs},
        )

    def backoff_s(self, attempts: int) -> float:
        """Full jitter (AWS architecture blog, 'Exponential Backoff and Jitter')."""
        cap = min(self.config.retry_max_s, self.config.retry_base_s * 2 ** (attempts - 1))
        return random.uniform(self.config.retry_base_s / 2, max(cap, self.config.retry_base_s))

    async def _fail_in(self, tx: Tx, row: Claimed, reason: str, at: int) -> None:
        event = DeliveryFailedEvent(
            message_id=row.client_msg_id, gateway_id=row.message_id, sender=row.sender,
            recipient=row.member or row.recipient, reason=reason, at=at,
        )  # fmt: skip
        group = row.member is not None
        if not await outbox.finish(tx, row.seq, row.message_id, "failed", at, group=group):
            return  # another replica took it over and finished it
        await outbox.dead_letter(tx, row.message_id, row.service, row.attempts + 1, reason, at)
        await self._audit_in(tx, row, "message.deliver_failed", reason=reason)
        # Typing signals are ephemeral: nobody needs to hear one was lost; a membership change
        # was the gateway's own doing, and a platform user's group item has no provider.
        if row.kind not in ("typing", "group_membership") and provider_of(row.sender) is not None:
            await self.events.append_in(tx, row.client_id, event)


def _outgoing(row: Claimed, payload: dict[str, Any]) -> Outgoing:
    assert row.kind in ("message", "receipt", "typing")
    return Outgoing(
        id=row.message_id, kind=row.kind, service=row.service, sender=row.sender,
        recipient=row.recipient, sent_at=row.sent_at, payload=payload,
    )  # fmt: skip
