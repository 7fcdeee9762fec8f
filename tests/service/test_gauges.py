"""The database-state gauges: read from whatever tables exist, tolerant of the rest."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import msgspec
import pytest
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from gateway import metrics
from gateway.clock import now_ms
from gateway.crypto import OlmParty
from gateway.service.egress import DestinationPolicy, Egress
from gateway.service.gauges import GaugeRefresher, Probe, default_probes, existing_tables
from gateway.service.interop_requests import InteropRequestIn, InteropRequests
from gateway.store import Store, Tx, open_store
from tests.conftest import make_config
from tests.http.relay_support import eventually
from tests.onboarding_helpers import new_key
from tests.service.fakes import everyone_reachable, key_directory


@pytest.fixture
async def store(store_url: str) -> Store:
    opened = await open_store(store_url)
    yield opened
    await opened.close()


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


async def test_refresh_on_a_schema_without_the_tables_only_stamps(store: Store) -> None:
    metrics.OUTBOX_DEPTH.set(7)  # left as it is: no outbox table to say otherwise
    before = time.time()
    await GaugeRefresher(store, 60, ()).refresh()
    assert sample("gateway_outbox_depth") == 7
    assert sample("gateway_gauges_last_refresh_timestamp_seconds") >= before
    assert "kv" in await existing_tables(store)


async def test_a_failing_probe_does_not_stop_the_others(store: Store) -> None:
    ran: list[str] = []

    async def broken(store: Store, now_ms: int) -> None:
        await store.fetchval("SELECT no_such_column FROM kv")

    async def fine(store: Store, now_ms: int) -> None:
        ran.append("fine")

    refresher = GaugeRefresher(
        store,
        60,
        probes=(
            Probe("broken", frozenset({"kv"}), broken),
            Probe("fine", frozenset({"kv"}), fine),
            Probe("absent", frozenset({"no_such_table"}), fine),
        ),
    )
    with capture_logs() as logs:
        await refresher.refresh()
        await refresher.refresh()
    assert ran == ["fine", "fine"]
    failures = [e for e in logs if e["event"] == "gauge_probe_failed"]
    assert [e["probe"] for e in failures] == ["broken"]  # once per streak, not per round


async def test_periodic_refresh_starts_and_stops_promptly(store: Store) -> None:
    metrics.GAUGES_REFRESHED.set(0)
    refresher = GaugeRefresher(store, 3600, default_probes("main"))
    refresher.start()

    async def refreshed() -> bool:
        return sample("gateway_gauges_last_refresh_timestamp_seconds") != 0

    await eventually(refreshed)  # the first refresh runs at start, not after the interval
    async with asyncio.timeout(5):  # stopping does not wait out the 3600 s interval
        await refresher.stop()


async def test_one_time_key_low_water_is_the_emptiest_user_per_provider(store: Store) -> None:
    keys = key_directory(store, consent=everyone_reachable)
    await keys.publish("acme", "bob", OlmParty().key_bundle(5))
    await keys.publish("acme", "eve", OlmParty().key_bundle(3))
    await keys.publish("zeta", "ann", OlmParty().key_bundle(4))
    await keys.claim("other", "mimi://acme/u/eve")
    await GaugeRefresher(store, 60, default_probes("main")).refresh()
    assert sample("gateway_keys_one_time_keys_low_water", client_id="acme") == 2
    assert sample("gateway_keys_one_time_keys_low_water", client_id="zeta") == 4


async def test_checkpoint_age_is_this_replicas_chain(store: Store) -> None:
    now_ms = int(time.time() * 1000)

    async def checkpoints(tx: Tx) -> None:
        row = "INSERT INTO audit_checkpoints VALUES ($1, $2, 'h', $3, 'k', 's')"
        await tx.execute(row, "replica-a", 1, now_ms - 600_000)
        await tx.execute(row, "replica-b", 1, now_ms - 5_000)

    await store.write("test_checkpoints", checkpoints)
    await GaugeRefresher(store, 60, default_probes("replica-a")).refresh()
    assert 599 <= sample("gateway_audit_last_checkpoint_age_seconds") <= 610
    await GaugeRefresher(store, 60, default_probes("replica-c")).refresh()
    assert sample("gateway_audit_last_checkpoint_age_seconds") == 0  # none yet


async def test_interop_requests_open_and_past_their_deadline(store: Store) -> None:
    config = make_config(Path("unused"))

    def request_in() -> InteropRequestIn:
        _, jwk = new_key()
        body = {
            "organisation": "Acme Messaging",
            "contact_email": "interop@acme.example",
            "services": ["whatsapp"],
            "functionalities": ["text"],
            "jwks": {"keys": [jwk]},
        }
        return msgspec.convert(body, InteropRequestIn)

    long_ago = now_ms() - (config.request_deadline_days + 1) * 86_400_000
    egress = Egress(DestinationPolicy())
    await InteropRequests(store, config, egress, clock=lambda: long_ago).submit(request_in())
    await InteropRequests(store, config, egress).submit(request_in())
    await GaugeRefresher(store, 60, default_probes("main")).refresh()
    assert sample("gateway_interop_requests_open") == 2
    assert sample("gateway_interop_requests_overdue") == 1
