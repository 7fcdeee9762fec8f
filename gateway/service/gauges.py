"""Gauges of database state (outbox, event backlog, keys, audit, requests), read from the store.

Each replica refreshes them on its own timer, so all replicas report the same values (dashboards
and alerts aggregate them with max()). A probe whose tables do not exist yet is skipped, so the
refresher works on every schema version; a probe that fails is logged and the others still run.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from prometheus_client import Gauge

from gateway import metrics
from gateway.clock import now_ms
from gateway.service.periodic import Periodic
from gateway.store import Store, events, stats
from gateway.store import groups as groups_store
from gateway.store import transparency as kt_store
from gateway.store.stats import existing_tables

__all__ = ["GaugeRefresher", "Probe", "default_probes", "existing_tables"]

log = structlog.get_logger(__name__)


def _age_s(now_ms: int, then_ms: int | None) -> float:
    return 0.0 if then_ms is None else max(0.0, (now_ms - int(then_ms)) / 1000)


async def _outbox(store: Store, now_ms: int) -> None:
    outbox = await stats.outbox_depth(store)
    metrics.OUTBOX_DEPTH.set(outbox.depth)
    metrics.OUTBOX_OLDEST_AGE.set(_age_s(now_ms, outbox.oldest_at))


def _per_provider(gauge: Gauge, values: dict[str, int]) -> None:
    # Clear and set with no await between: a scrape never sees a half-filled family.
    gauge.clear()
    for client_id, value in values.items():
        gauge.labels(client_id).set(value)


async def _events(store: Store, now_ms: int) -> None:
    _per_provider(metrics.EVENTS_BACKLOG, await events.backlog_per_provider(store))


async def _one_time_keys(store: Store, now_ms: int) -> None:
    _per_provider(metrics.ONE_TIME_KEYS_LOW_WATER, await stats.one_time_keys_low_water(store))


def _audit(chain_id: str) -> Callable[[Store, int], Awaitable[None]]:
    # This replica's own chain: a replica whose checkpointer is stuck shows, even while the
    # others keep theirs fresh.
    async def run(store: Store, now_ms: int) -> None:
        newest = await stats.newest_checkpoint_at(store, chain_id)
        metrics.AUDIT_CHECKPOINT_AGE.set(_age_s(now_ms, newest))

    return run


async def _interop_requests(store: Store, now_ms: int) -> None:
    requests = await stats.open_interop_requests(store, now_ms)
    metrics.INTEROP_REQUESTS_OPEN.set(requests.open)
    metrics.INTEROP_REQUESTS_OVERDUE.set(requests.overdue)


async def _key_transparency(store: Store, now_ms: int) -> None:
    metrics.KT_TREE_SIZE.set(await kt_store.size(store))
    head = await kt_store.latest_head(store)
    metrics.KT_HEAD_AGE.set(_age_s(now_ms, None if head is None else head.timestamp))


async def _groups(store: Store, now_ms: int) -> None:
    n_groups, n_members = await groups_store.totals(store)
    metrics.GROUPS.set(n_groups)
    metrics.GROUP_MEMBERS.set(n_members)


@dataclass(frozen=True)
class Probe:
    """Sets some gauges from the tables it names; skipped while any of them is missing."""

    name: str
    tables: frozenset[str]
    run: Callable[[Store, int], Awaitable[None]]


def default_probes(chain_id: str) -> tuple[Probe, ...]:
    """The probes of every catalogued database-state gauge; `chain_id` is this replica's."""
    return (
        Probe("outbox", frozenset({"relay_outbox"}), _outbox),
        Probe("events", frozenset({"provider_events"}), _events),
        Probe(
            "one_time_keys",
            frozenset({"e2ee_identities", "e2ee_one_time_keys"}),
            _one_time_keys,
        ),
        Probe("audit", frozenset({"audit_checkpoints"}), _audit(chain_id)),
        Probe("interop_requests", frozenset({"interop_requests"}), _interop_requests),
        Probe("key_transparency", frozenset({"kt_tree", "kt_heads"}), _key_transparency),
        Probe("groups", frozenset({"group_members"}), _groups),
    )


class GaugeRefresher:
    """Refreshes the database-state gauges every `interval_s` seconds until stopped."""

    def __init__(self, store: Store, interval_s: float, probes: tuple[Probe, ...]) -> None:
        self._store = store
        self._probes = probes
        self._failing: set[str] = set()
        self._periodic = Periodic(self.refresh, interval_s, "gauges")

    async def refresh(self) -> None:
        """Run every probe whose tables exist once; log (once per streak) the ones that fail."""
        tables = await existing_tables(self._store)
        now = now_ms()
        for probe in self._probes:
            if not probe.tables <= tables:
                continue
            try:
                await probe.run(self._store, now)
            except Exception:  # one broken probe must not blind the others
                if probe.name not in self._failing:
                    log.exception("gauge_probe_failed", probe=probe.name)
                self._failing.add(probe.name)
            else:
                self._failing.discard(probe.name)
        metrics.GAUGES_REFRESHED.set(time.time())

    def start(self) -> None:
        """Start refreshing now and every interval."""
        self._periodic.start()

    async def stop(self) -> None:
        """Stop refreshing; returns once the task has ended."""
        await self._periodic.stop()
