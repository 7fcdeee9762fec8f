"""GET /admin/v1/audit, checkpoints on a running gateway, and verifying it live."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec
import pytest

from gateway.app import create_app
from gateway.config import Config
from gateway.http.app_keys import AUDIT_SIGNER, STORE
from gateway.service.audit.checkpoints import keyring, parse_public_key
from gateway.service.audit.verify import verify_database, verify_export
from gateway.store import open_store
from tests.conftest import admin_headers, assert_problem


@pytest.fixture
def config(backend_config: Config) -> Config:
    """Checkpoints every 5 records, on every storage backend (so `client` runs on each)."""
    audit = msgspec.structs.replace(
        backend_config.audit, checkpoint_every=5, checkpoint_interval_s=30.0
    )
    return msgspec.structs.replace(backend_config, audit=audit)


@pytest.fixture
async def client(config: Config, aiohttp_client: Any) -> Any:
    """The gateway on `config`; set up after the database, so it closes before it is dropped."""
    return await aiohttp_client(create_app(config))


async def wait_for(predicate: Any) -> None:
    for _ in range(100):
        if await predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


async def test_live_database_verifies_while_the_gateway_runs(client: Any, config: Config) -> None:
    await asyncio.gather(*(client.get("/healthz") for _ in range(12)))
    await client.get("/nope")

    async def checkpointed() -> bool:
        return bool(await client.app[STORE].fetchval("SELECT count(*) FROM audit_checkpoints"))

    await wait_for(checkpointed)  # every 5 records
    offer = await (await client.get("/.well-known/dma-interop")).json()
    key = parse_public_key(offer["audit"]["public_key"])
    reader = await open_store(config.database_url, readonly=True)
    try:
        outcome = await verify_database(reader, keyring([key]))
    finally:
        await reader.close()
    assert outcome.ok, outcome.render()
    assert outcome.records >= 13 and outcome.chains[0].checkpoints >= 1


async def test_shutdown_signs_the_last_record(config: Config, aiohttp_client: Any) -> None:
    client = await aiohttp_client(create_app(config))
    await client.get("/healthz")
    signer = client.app[AUDIT_SIGNER]
    await client.close()  # runs the cleanup contexts
    reader = await open_store(config.database_url, readonly=True)
    try:
        outcome = await verify_database(reader, keyring([signer.public]))
        head = await reader.fetchval("SELECT max(seq) FROM audit_records")
    finally:
        await reader.close()
    assert outcome.ok and outcome.chains[0].last_checkpoint == head
    assert not outcome.warnings


async def test_admin_export_streams_a_verifiable_export(
    client: Any, config: Config, tmp_path: Path
) -> None:
    for _ in range(3):
        await client.get("/healthz")
    response = await client.get("/admin/v1/audit", headers=admin_headers())
    assert response.status == 200
    assert response.content_type == "application/x-ndjson"
    out = tmp_path / "export.jsonl"
    out.write_bytes(await response.read())
    outcome = verify_export(out, keyring([client.app[AUDIT_SIGNER].public]))
    assert outcome.ok, outcome.render()
    assert outcome.records >= 3 and outcome.chains[0].sealed


async def test_admin_export_of_a_time_range(client: Any, tmp_path: Path) -> None:
    await client.get("/healthz")
    response = await client.get(
        "/admin/v1/audit",
        params={"from": "2000-01-01", "to": "2000-01-02T00:00:00Z"},
        headers=admin_headers(),
    )
    assert response.status == 200
    lines = (await response.read()).decode().splitlines()
    assert len(lines) == 1 and '"kind":"header"' in lines[0]


async def test_admin_export_needs_the_admin_token(client: Any) -> None:
    response = await client.get("/admin/v1/audit", headers={"Authorization": "Bearer nope"})
    body = await response.json(content_type=None)
    assert_problem(response.status, response.content_type, body, 401, "/problems/unauthorized")


@pytest.mark.parametrize("name", ["from", "to"])
async def test_admin_export_rejects_a_bad_instant(client: Any, name: str) -> None:
    response = await client.get(
        "/admin/v1/audit", params={name: "last tuesday"}, headers=admin_headers()
    )
    body = await response.json(content_type=None)
    assert_problem(response.status, response.content_type, body, 422, "/problems/validation")
    assert body["field"] == name
    assert "tuesday" not in body["detail"]  # the request's bytes are not echoed
