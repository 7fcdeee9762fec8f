from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp import web

from gateway.app import create_app
from gateway.config import ConfigError, load_config
from gateway.http.ops import OPENAPI_PATH
from tests.conftest import REPO, assert_problem, make_config


async def test_healthz_and_readyz(backend_client: Any) -> None:
    client = backend_client
    response = await client.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"status": "ok"}
    response = await client.get("/readyz")
    assert response.status == 200
    assert await response.json() == {"status": "ready"}


async def test_readyz_is_503_when_storage_is_gone(backend_client: Any) -> None:
    from gateway.http.app_keys import STORE

    client = backend_client
    await client.app[STORE].close()
    response = await client.get("/readyz")
    assert_problem(
        response.status, response.content_type, await response.json(), 503, "/problems/unavailable"
    )
    assert response.headers["Retry-After"]


async def test_request_id_is_echoed_or_generated(client: Any) -> None:
    response = await client.get("/healthz", headers={"X-Request-Id": "abc-123.x"})
    assert response.headers["X-Request-Id"] == "abc-123.x"
    response = await client.get("/healthz", headers={"X-Request-Id": "bad id\twith spaces"})
    generated = response.headers["X-Request-Id"]
    assert generated != "bad id\twith spaces"
    assert len(generated) == 32
    response = await client.get("/nope", headers={"X-Request-Id": "trace-404"})
    assert response.headers["X-Request-Id"] == "trace-404"
    assert (await response.json())["request_id"] == "trace-404"


async def test_metrics_count_requests_by_route_template(client: Any) -> None:
    def count(text: str, route: str, status: str) -> float:
        prefix = f'gateway_http_requests_total{{method="GET",route="{route}",status="{status}"}} '
        for line in text.splitlines():
            if line.startswith(prefix):
                return float(line[len(prefix) :])
        return 0.0

    before = await (await client.get("/metrics")).text()
    await client.get("/nope/4915112345678")
    await client.get("/healthz")
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.content_type == "text/plain"
    text = await response.text()
    assert count(text, "unmatched", "404") == count(before, "unmatched", "404") + 1
    assert count(text, "/healthz", "200") == count(before, "/healthz", "200") + 1
    assert "4915112345678" not in text  # raw paths never become labels
    for name in (
        "gateway_http_request_duration_seconds_bucket",
        "gateway_http_requests_in_flight",
        "gateway_build_info",
        "process_resident_memory_bytes",
    ):
        assert name in text


async def test_reference_offer(client: Any) -> None:
    response = await client.get("/.well-known/dma-interop")
    assert response.status == 200
    offer = await response.json()
    assert offer["free_of_charge"] is True
    assert offer["request_deadline_days"] == 90
    assert set(offer["services"]) == {"whatsapp", "messenger", "instagram"}
    whatsapp = offer["services"]["whatsapp"]
    assert whatsapp["e2ee"]["policy"] == "required"
    assert offer["services"]["messenger"]["e2ee"]["policy"] == "required"
    assert offer["services"]["instagram"]["e2ee"]["policy"] == "optional"
    assert whatsapp["limits"]["text_max"] == 4096
    assert whatsapp["limits"]["caption_max"] == 1024
    assert whatsapp["limits"]["media"]["image"]["max_bytes"] == 5 * 1024 * 1024
    assert offer["services"]["messenger"]["limits"]["text_max"] == 2000
    assert offer["services"]["instagram"]["limits"]["text_unit"] == "utf8_bytes"
    assert whatsapp["functionalities"]["text"] == {"state": "available"}
    assert whatsapp["functionalities"]["voice_calls"]["state"] == "planned"
    assert whatsapp["functionalities"]["voice_calls"]["planned_for"]
    endpoints = offer["endpoints"]
    assert endpoints["token"].endswith("/v1/oauth/token")
    assert endpoints["jwks_uri"].endswith("/.well-known/jwks.json")


async def test_openapi_is_served_verbatim(client: Any) -> None:
    response = await client.get("/openapi.json")
    assert response.status == 200
    assert await response.read() == (REPO / "specs" / "openapi.json").read_bytes()
    assert OPENAPI_PATH == REPO / "specs" / "openapi.json"
    assert (await response.json())["openapi"].startswith("3.1")


def _registered_routes(app: web.Application) -> set[tuple[str, str]]:
    found = set()
    for route in app.router.routes():
        if route.method in ("HEAD", "*"):
            continue
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        found.add((route.method.lower(), path))
    return found


def test_every_route_is_documented_and_every_documented_path_exists(config: Any) -> None:
    app = create_app(config)
    documented = {
        (method, path)
        for path, item in json.loads(OPENAPI_PATH.read_text())["paths"].items()
        for method in item
        if method in ("get", "post", "put", "delete", "patch")
    }
    assert _registered_routes(app) == documented


async def test_metrics_with_a_token_are_for_its_bearer_only(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    config = make_config(tmp_path / "data")
    config = msgspec.structs.replace(
        config, metrics=msgspec.structs.replace(config.metrics, token="scrape-me")
    )
    client = await aiohttp_client(create_app(config))
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        response = await client.get("/metrics", headers=headers)
        body = await response.json(content_type=None)
        assert_problem(response.status, response.content_type, body, 401, "/problems/unauthorized")
        assert "gateway_" not in str(body)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    response = await client.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
    assert response.status == 200
    assert "gateway_http_requests_total" in await response.text()


async def test_metrics_on_their_own_listener_leave_the_public_one(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = load_config(
        env={
            "GATEWAY_DATA_DIR": str(tmp_path / "data"),
            "GATEWAY_METRICS__LISTEN": f"127.0.0.1:{port}",
            "GATEWAY_METRICS__TOKEN": "scrape-me",
        }
    )
    client = await aiohttp_client(create_app(config))
    response = await client.get("/metrics")
    body = await response.json(content_type=None)
    assert_problem(response.status, response.content_type, body, 404, "/problems/not-found")
    async with aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{port}/metrics"
        async with session.get(url) as response:
            assert response.status == 401
        auth = {"Authorization": "Bearer scrape-me"}
        async with session.get(url, headers=auth) as response:
            assert response.status == 200
            assert "gateway_http_requests_total" in await response.text()
        async with session.get(f"http://127.0.0.1:{port}/healthz", headers=auth) as response:
            assert response.status == 404  # metrics alone there
    await client.close()
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.get(f"http://127.0.0.1:{port}/metrics")


@pytest.mark.parametrize("listen", ["9100", "localhost:", ":9100", "host:99999"])
def test_a_bad_metrics_listen_address_names_the_key(listen: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(env={"GATEWAY_METRICS__LISTEN": listen})
    assert caught.value.key == "metrics.listen"
