"""Two gateway apps on one PostgreSQL schema, as two replicas: what they share, at once.

(The same with real processes, a SIGKILL and 200 messages is tests/test_replicas.py.)
"""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_app
from gateway.config import BucketConfig, Config, ConfigError, load_config
from gateway.http.app_keys import EVENTS
from gateway.service.ratelimit import SharedRateLimiter, lease_size
from gateway.store import StoreError, open_store, pg_session
from tests.conftest import admin_headers, assert_problem, make_config
from tests.onboarding_helpers import onboard


def replica_config(data_dir: Path, url: str, replica: str, **auth: Any) -> Config:
    """Replicas share the database and the data dir (keys); each has its own id."""
    config = make_config(data_dir)
    return msgspec.structs.replace(
        config,
        storage=msgspec.structs.replace(config.storage, database_url=url, pool_size=3),
        server=msgspec.structs.replace(config.server, replica_id=replica),
        audit=msgspec.structs.replace(config.audit, chain_id=replica),
        auth=msgspec.structs.replace(config.auth, **auth),
    )


async def started(config: Config) -> TestClient[Any, Any]:
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(config)))
    try:
        await client.start_server()
    except BaseException:
        await client.close()  # what did start is cleaned up, as run_app does
        raise
    return client


def test_replica_id_defaults_to_the_host_and_names_the_postgres_audit_chain() -> None:
    sqlite = load_config(env={})
    assert sqlite.server.replica_id and sqlite.audit.chain_id == "main"
    pg = load_config(env={"GATEWAY_DATABASE_URL": "postgresql://db/gw"})
    assert pg.audit.chain_id == pg.server.replica_id == sqlite.server.replica_id
    named = load_config(
        env={"GATEWAY_DATABASE_URL": "postgresql://db/gw", "GATEWAY_REPLICA_ID": "gw-2"}
    )
    assert (named.server.replica_id, named.audit.chain_id) == ("gw-2", "gw-2")
    chain = {"GATEWAY_REPLICA_ID": "gw-2", "GATEWAY_AUDIT__CHAIN_ID": "audit-b"}
    assert load_config(
        env={"GATEWAY_DATABASE_URL": "postgresql://db/gw", **chain}
    ).audit.chain_id == ("audit-b")
    with pytest.raises(ConfigError) as caught:
        load_config(env={"GATEWAY_REPLICA_ID": "a b"})
    assert caught.value.key == "server.replica_id"


async def test_a_second_live_replica_with_the_same_id_or_chain_is_refused(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pg_session, "HOLD_WAIT_S", 0.2)
    first = await started(replica_config(tmp_path / "data", postgres_url, "gw-1"))
    try:
        twin = replica_config(tmp_path / "data", postgres_url, "gw-1")
        with pytest.raises(StoreError, match="replica:gw-1 is held by another live gateway"):
            await started(twin)
        same_chain = msgspec.structs.replace(
            twin, server=msgspec.structs.replace(twin.server, replica_id="gw-2")
        )
        with pytest.raises(StoreError, match=r"audit-chain:gw-1 is held .*chain_id"):
            await started(same_chain)
    finally:
        await first.close()
    again = await started(replica_config(tmp_path / "data", postgres_url, "gw-1"))
    await again.close()  # the first one stopped: its id and chain are free again


async def test_rate_limit_buckets_are_shared_by_the_replicas(postgres_url: str) -> None:
    a, b = await open_store(postgres_url), await open_store(postgres_url)
    try:
        limits = load_config(env={}).limits.intake  # burst 5, one more every 20 s
        on_a, on_b = SharedRateLimiter(a), SharedRateLimiter(b)
        waits = [await (on_a if n % 2 else on_b).take("ip:1", limits) for n in range(5)]
        assert waits == [0.0] * 5
        wait = await on_a.take("ip:1", limits)
        assert 19.0 < wait <= 20.0
        assert await on_b.take("ip:1", limits) > 0
        assert await on_b.take("ip:2", limits) == 0.0  # another key, its own bucket
    finally:
        await a.close()
        await b.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_busy_bucket_is_taken_a_lease_at_a_time(postgres_url: str) -> None:
    store = await open_store(postgres_url)
    clock = Clock()
    limiter = SharedRateLimiter(store, clock=clock)
    bucket = BucketConfig(rate_per_s=100.0, burst=40)  # a lease: min(100 x 0.1 s, 40 / 10) = 4
    assert lease_size(bucket) == 4

    async def stored_tokens() -> float:
        return float(await store.fetchval("SELECT tokens FROM rate_buckets WHERE key = 'p:m'"))

    try:
        assert await limiter.take("p:m", bucket) == 0.0
        assert round(await stored_tokens()) == 36  # four taken at once
        assert [await limiter.take("p:m", bucket) for _ in range(3)] == [0.0] * 3
        assert round(await stored_tokens()) == 36  # spent locally: no statement ran
        assert await limiter.take("p:m", bucket) == 0.0
        assert await stored_tokens() < 36  # the next lease
        clock.now += 1.0  # the rest of that lease expired unspent: the next take asks again
        before = await stored_tokens()
        assert await limiter.take("p:m", bucket) == 0.0
        assert await stored_tokens() != before
    finally:
        await store.close()


async def test_leases_never_let_the_replicas_past_the_limit(postgres_url: str) -> None:
    a, b = await open_store(postgres_url), await open_store(postgres_url)
    try:
        bucket = BucketConfig(rate_per_s=100.0, burst=40)
        on_a, on_b = SharedRateLimiter(a), SharedRateLimiter(b)
        started = time.monotonic()
        waits = [await (on_a if n % 2 else on_b).take("p:m", bucket) for n in range(80)]
        elapsed = time.monotonic() - started
        allowed = waits.count(0.0)
        # Every token spent was taken from the shared bucket: its burst plus what it refilled
        # meanwhile, less at most a lease (4) each replica still holds unspent.
        assert 40 - 2 * 4 <= allowed <= 40 + math.ceil(100 * elapsed) + 1
        assert any(w > 0 for w in waits)
    finally:
        await a.close()
        await b.close()


async def test_a_suspension_reaches_the_other_replica_at_once(
    tmp_path: Path, postgres_url: str
) -> None:
    # A state cache of a minute: only the notification can make B see it within the test.
    a = await started(
        replica_config(tmp_path / "data", postgres_url, "gw-a", provider_state_ttl_s=60.0)
    )
    b = await started(
        replica_config(tmp_path / "data", postgres_url, "gw-b", provider_state_ttl_s=60.0)
    )
    try:
        provider = await onboard(a)
        response = await b.get("/v1/events", headers=provider.headers())
        assert response.status == 200  # B has cached "active"
        response = await a.post(
            f"/admin/v1/providers/{provider.client_id}/suspend",
            json={"reason": "abuse"},
            headers=admin_headers(),
        )
        assert response.status == 200, await response.text()
        deadline = time.monotonic() + 2
        while (response := await b.get("/v1/events", headers=provider.headers())).status == 200:
            assert time.monotonic() < deadline, "B still serves the suspended provider"
            await asyncio.sleep(0.02)
        assert_problem(
            response.status,
            response.content_type,
            await response.json(),
            403,
            "/problems/provider-suspended",
        )
    finally:
        await a.close()
        await b.close()


async def test_a_long_poll_on_one_replica_wakes_for_an_event_accepted_by_another(
    tmp_path: Path, postgres_url: str
) -> None:
    a = await started(replica_config(tmp_path / "data", postgres_url, "gw-a"))
    b = await started(replica_config(tmp_path / "data", postgres_url, "gw-b"))
    try:
        provider = await onboard(a)
        poll = asyncio.create_task(
            b.get("/v1/events", params={"wait": "10"}, headers=provider.headers())
        )
        await asyncio.sleep(0.3)  # B's long poll is waiting
        started_at = time.monotonic()
        event = {"type": "typing", "from": "mimi://whatsapp/u/1", "to": "x", "state": "on"}
        await a.app[EVENTS].append(provider.client_id, event)
        response = await asyncio.wait_for(poll, 5)
        took = time.monotonic() - started_at
        body = await response.json()
        assert [e["type"] for e in body["events"]] == ["typing"]
        assert took < 1.0, f"woken after {took:.2f} s: by polling (2 s), not by the notification"
    finally:
        await a.close()
        await b.close()


async def test_concurrent_takes_of_one_busy_key_all_get_an_answer(postgres_url: str) -> None:
    store = await open_store(postgres_url, pool_size=8)
    try:
        limiter = SharedRateLimiter(store)
        bucket = BucketConfig(rate_per_s=1000.0, burst=200)  # leases of 20
        waits = await asyncio.gather(*(limiter.take("p:m", bucket) for _ in range(300)))
        assert 150 <= waits.count(0.0) <= 260 and any(w > 0 for w in waits)
    finally:
        await store.close()
