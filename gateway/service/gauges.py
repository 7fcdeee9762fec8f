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
from gateway.service.periodic import Periodic
from gateway.store import Row, Store

log = structlog.get_logger(__name__)


def _age_s(now_ms: int, then_ms: int | None) -> float:
    return 0.0 if then_ms is None else max(0.0, (now_ms - int(then_ms)) / 1000)


async def _outbox(store: Store, now_ms: int) -> None:
    row = await store.fetchrow(
        "SELECT COUNT(*) AS depth, MIN(created_at) AS oldest FROM relay_outbox"
    )
    assert row is not None
    metrics.OUTBOX_DEPTH.set(row["depth"])
    metrics.OUTBOX_OLDEST_AGE.set(_age_s(now_ms, row["oldest"]))


def _per_provider(gauge: Gauge, rows: list[Row], column: str) -> None:
    # Clear and set with no await between: a scrape never sees a half-filled family.
    gauge.clear()
    for row in rows:
        gauge.labels(row["client_id"]).set(row[column])


async def _events(store: Store, now_ms: int) -> None:
    rows = await store.fetch(
        # Acknowledged events are deleted: what is left is the backlog.
        "SELECT client_id, COUNT(*) AS backlog FROM provider_events GROUP BY client_id"
    )
    _per_provider(metrics.EVENTS_BACKLOG, rows, "backlog")


async def _one_time_keys(store: Store, now_ms: int) -> None:
    # Claimed keys are deleted, so what is left per user is what can still be claimed.
    rows = await store.fetch(
        "SELECT client_id, MIN(remaining) AS low FROM ("
        " SELECT i.client_id AS client_id, COUNT(k.key_id) AS remaining"
        " FROM e2ee_identities i LEFT JOIN e2ee_one_time_keys k ON k.user_uri = i.user_uri"
        " GROUP BY i.client_id, i.user_uri) per_user GROUP BY client_id"
    )
    _per_provider(metrics.ONE_TIME_KEYS_LOW_WATER, rows, "low")


def _audit(chain_id: str) -> Callable[[Store, int], Awaitable[None]]:
    # This replica's own chain: a replica whose checkpointer is stuck shows, even while the
    # others keep theirs fresh.
    async def run(store: Store, now_ms: int) -> None:
        newest = await store.fetchval(
            "SELECT MAX(at) FROM audit_checkpoints WHERE chain_id = $1", chain_id
        )
        metrics.AUDIT_CHECKPOINT_AGE.set(_age_s(now_ms, newest))

    return run


async def _interop_requests(store: Store, now_ms: int) -> None:
    row = await store.fetchrow(
        "SELECT COUNT(*) AS open,"
        " COALESCE(SUM(CASE WHEN deadline_at < $1 THEN 1 ELSE 0 END), 0) AS overdue"
        " FROM interop_requests WHERE status = 'received'",
        now_ms,
    )
    assert row is not None
    metrics.INTEROP_REQUESTS_OPEN.set(row["open"])
    metrics.INTEROP_REQUESTS_OVERDUE.set(row["overdue"])


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
    )


async def existing_tables(store: Store) -> set[str]:
    """Names of the tables in the store's schema."""
    if store.dialect == "sqlite":
        rows = await store.fetch("SELECT name FROM sqlite_master WHERE type = 'table'")
    else:
        rows = await store.fetch(
            "SELECT table_name AS name FROM information_schema.tables"
            " WHERE table_schema = current_schema()"
        )
    return {row["name"] for row in rows}


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
        now_ms = int(time.time() * 1000)
        for probe in self._probes:
            if not probe.tables <= tables:
                continue
            try:
                await probe.run(self._store, now_ms)
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
