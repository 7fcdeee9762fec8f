"""Every request leaves exactly one audit record, with its final status and route template."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

import msgspec
import pytest
from aiohttp import web

from gateway.app import create_app
from gateway.config import Config
from gateway.errors import Conflict
from gateway.http.app_keys import AUDIT, AUDIT_LOG, STORE
from gateway.http.body import decode_json, json_response
from gateway.service.audit.records import GENESIS, chain_hash, record_from_row
from gateway.store import Tx
from tests.conftest import ADMIN_TOKEN, admin_headers

USER = "mimi://whatsapp/u/4915112345678"


class Echo(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str


async def echo(request: web.Request) -> web.Response:
    return json_response(await decode_json(request, Echo), status=201)


async def explode(request: web.Request) -> web.Response:
    raise RuntimeError("boom")


async def accept(request: web.Request) -> web.Response:
    """Stands for a service that writes its effect and its audit record in one unit."""
    body = await decode_json(request, Echo)
    ctx, audit_log = request[AUDIT], request.app[AUDIT_LOG]

    async def unit(tx: Tx) -> None:
        await tx.execute("INSERT INTO kv (key, value, updated_at) VALUES ($1, 'x', 0)", body.name)
        await audit_log.append_in(
            tx, ctx, status=202, subjects=[USER], attrs={"service": "whatsapp", "kind": "text"}
        )
        if body.name == "fail-after-audit":
            raise Conflict("refused after the audit append", field="$.name")

    await request.app[STORE].write("test_accept", unit)
    return json_response({"status": "accepted"}, status=202)


async def user_route(request: web.Request) -> web.Response:
    request[AUDIT].add_subjects(f"mimi://whatsapp/u/{request.match_info['user']}")
    await decode_json(request, Echo)
    return json_response({})


@pytest.fixture
async def probe(backend_config: Config, aiohttp_client: Any) -> Any:
    """The gateway with test routes, once per storage backend (closed before its database)."""
    small = msgspec.structs.replace(
        backend_config, server=msgspec.structs.replace(backend_config.server, max_body_bytes=256)
    )
    app = create_app(small)
    app.router.add_post("/test/echo", echo)
    app.router.add_get("/test/explode", explode)
    app.router.add_post("/test/accept", accept)
    app.router.add_post("/test/users/{user}", user_route)
    return await aiohttp_client(app)


async def records(client: Any) -> list[dict[str, Any]]:
    rows = await client.app[STORE].fetch("SELECT * FROM audit_records ORDER BY seq")
    return [dict(row) for row in rows]


@pytest.mark.parametrize(
    ("call", "status", "route", "action"),
    [
        (lambda c: c.get("/healthz"), 200, "/healthz", "ops.health"),
        (lambda c: c.get("/nope/4915112345678"), 404, "unmatched", "http.not_found"),
        (lambda c: c.delete("/healthz"), 405, "/healthz", "http.method_not_allowed"),
        (lambda c: c.post("/test/echo", json={"name": "x" * 300}), 413, "/test/echo", None),
        (lambda c: c.post("/test/echo", data=b"name=x"), 415, "/test/echo", None),
        (lambda c: c.post("/test/echo", json={"name": 3}), 422, "/test/echo", None),
        (lambda c: c.post("/test/echo", data=b"{", headers=JSON), 400, "/test/echo", None),
        (lambda c: c.get("/test/explode"), 500, "/test/explode", None),
        (lambda c: c.post("/test/echo", json={"name": "x"}), 201, "/test/echo", None),
    ],
)
async def test_every_request_leaves_exactly_one_record(
    probe: Any, call: Any, status: int, route: str, action: str | None
) -> None:
    response = await call(probe)
    assert response.status == status
    [record] = await records(probe)
    assert record["status"] == status
    assert record["route"] == route
    assert record["request_id"] == response.headers["X-Request-Id"]
    assert record["action"] == (action or f"{record['method']} {route}")
    assert record["actor"] == "anonymous"
    assert record["duration_us"] >= 0
    if status >= 400:
        body = await response.json(content_type=None)
        assert json.loads(record["attrs"])["problem"] == body["type"]


JSON = {"Content-Type": "application/json"}


async def test_payload_digest_and_size_never_the_body(probe: Any) -> None:
    body = b'{"name": "very secret words"}'
    await probe.post("/test/echo", data=body, headers=JSON)
    [record] = await records(probe)
    assert record["payload_sha256"] == hashlib.sha256(body).hexdigest()
    assert record["payload_size"] == len(body)
    assert "secret" not in json.dumps(record)


async def test_admin_actor_is_recorded(probe: Any) -> None:
    response = await probe.get("/admin/v1/audit", headers=admin_headers())
    assert response.status == 200
    await response.read()
    # A streamed answer is on the wire before its record is written: wait for it.
    for _ in range(100):
        if await records(probe):
            break
        await asyncio.sleep(0.01)
    record = (await records(probe))[-1]
    assert (record["actor"], record["action"], record["status"]) == ("admin", "audit.export", 200)
    assert ADMIN_TOKEN not in json.dumps(await records(probe))


async def test_a_service_appends_inside_its_unit_and_the_middleware_adds_nothing(
    probe: Any,
) -> None:
    response = await probe.post("/test/accept", json={"name": "m1"})
    assert response.status == 202
    [record] = await records(probe)
    assert record["status"] == 202
    assert record["action"] == "POST /test/accept"
    assert json.loads(record["attrs"]) == {"service": "whatsapp", "kind": "text"}
    assert json.loads(record["subjects"]) == [probe.app[AUDIT_LOG].pseudonymize(USER)]
    assert record["payload_size"] == len(b'{"name": "m1"}')


async def test_a_rolled_back_unit_takes_its_record_along(probe: Any) -> None:
    response = await probe.post("/test/accept", json={"name": "fail-after-audit"})
    assert response.status == 409
    [record] = await records(probe)  # the middleware's, not the rolled-back one
    assert record["status"] == 409
    assert json.loads(record["attrs"]) == {"problem": "/problems/conflict"}
    assert await probe.app[STORE].fetchval("SELECT count(*) FROM kv") == 0


async def test_no_raw_user_id_or_content_in_records(probe: Any) -> None:
    await probe.post("/test/users/4915112345678", json={"name": "hello there"})
    await probe.post("/test/accept", json={"name": "4915112345678"})
    rows = await records(probe)
    text = json.dumps(rows)
    assert "4915112345678" not in text
    assert "hello there" not in text
    pseudonym = probe.app[AUDIT_LOG].pseudonymize(USER)
    assert [json.loads(r["subjects"]) for r in rows] == [[pseudonym], [pseudonym]]
    assert rows[0]["route"] == "/test/users/{user}"
    assert rows[0]["pseudonym_key"] == probe.app[AUDIT_LOG].pseudonymize.key_id


async def test_chain_holds_across_concurrent_and_failing_units(probe: Any) -> None:
    names = ["fail-after-audit" if i % 3 == 0 else f"m{i}" for i in range(30)]
    await asyncio.gather(*(probe.post("/test/accept", json={"name": n}) for n in names))
    rows = await records(probe)
    assert [r["seq"] for r in rows] == list(range(1, 31))
    prev = GENESIS
    for row in rows:
        prev = chain_hash(prev, record_from_row(row))
        assert prev.hex() == row["hash"]
