"""Slow clients are cut off; the client address is believed only from trusted proxies."""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path
from typing import Any

import pytest

from gateway.app import create_app
from gateway.config import Config, load_config
from gateway.http.edge import client_address
from tests.conftest import ADMIN_TOKEN


def config_of(data_dir: Path, **env: str) -> Config:
    given = {"GATEWAY_DATA_DIR": str(data_dir), "GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN}
    return load_config(env=given | {f"GATEWAY_{k.upper()}": v for k, v in env.items()})


async def dribble(writer: asyncio.StreamWriter, reader: asyncio.StreamReader) -> bytes:
    """Send one byte every 50 ms until the server answers or hangs up; what it said."""
    while True:
        try:
            writer.write(b"a")
            await writer.drain()
        except ConnectionError:
            return b""
        try:
            return await asyncio.wait_for(reader.read(65536), 0.05)
        except TimeoutError:
            continue
        except ConnectionError:
            return b""


async def slow_clients(port: int, head: bytes, count: int) -> list[bytes]:
    async def one() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head)
        try:
            return await dribble(writer, reader)
        finally:
            writer.close()

    return await asyncio.wait_for(asyncio.gather(*(one() for _ in range(count))), 10)


async def test_slow_request_heads_are_dropped(aiohttp_server: Any, tmp_path: Path) -> None:
    config = config_of(tmp_path, server__request_head_timeout_s="0.5")
    server = await aiohttp_server(create_app(config))
    async with asyncio.timeout(5):  # cut off by the gateway, not by the test
        answers = await slow_clients(
            server.port, b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: ", 40
        )
    assert answers == [b""] * 40  # hung up on, without an answer


async def test_slow_bodies_get_408_and_the_connection_closes(
    aiohttp_server: Any, tmp_path: Path
) -> None:
    config = config_of(tmp_path, server__request_body_timeout_s="0.5", limits__enabled="false")
    server = await aiohttp_server(create_app(config))
    head = (
        b"POST /v1/interop-requests HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100000\r\n\r\n{"
    )
    async with asyncio.timeout(5):  # cut off by the gateway, not by the test
        answers = await slow_clients(server.port, head, 10)
    for answer in answers:
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:100]
        assert b"application/problem+json" in answer
        assert b"/problems/request-timeout" in answer
        assert b"Connection: close" in answer


async def test_prompt_clients_are_served_as_before(aiohttp_client: Any, tmp_path: Path) -> None:
    config = config_of(
        tmp_path, server__request_head_timeout_s="0.5", server__request_body_timeout_s="0.5"
    )
    client = await aiohttp_client(create_app(config))
    response = await client.post("/v1/interop-requests", json={})
    assert response.status == 422
    await asyncio.sleep(0.7)  # the idle connection is closed; the next request opens one
    assert (await client.get("/healthz")).status == 200


NETS = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128")]


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("203.0.113.9", "198.51.100.1", "203.0.113.9"),  # not a proxy: its header is ignored
        ("10.0.0.2", "198.51.100.1", "198.51.100.1"),
        ("10.0.0.2", "6.6.6.6, 198.51.100.1, 10.0.0.3", "198.51.100.1"),  # left part forged
        ("::1", "2001:db8::1", "2001:db8::1"),
        ("10.0.0.2", "", "10.0.0.2"),
        ("10.0.0.2", "not-an-address", "10.0.0.2"),
        ("10.0.0.2", "10.0.0.5, 10.0.0.3", "10.0.0.5"),
    ],
)
def test_the_client_is_the_first_untrusted_hop_from_the_right(
    peer: str, forwarded: str, client: str
) -> None:
    assert client_address(peer, forwarded, NETS) == client


async def token_requests(client: Any, forwarded_for: str, n: int) -> list[int]:
    statuses = []
    for _ in range(n):
        response = await client.post(
            "/v1/oauth/token",
            data={"grant_type": "client_credentials"},
            headers={"X-Forwarded-For": forwarded_for},
        )
        statuses.append(response.status)
    return statuses


async def test_behind_a_trusted_proxy_each_client_has_its_own_bucket(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    config = config_of(
        tmp_path,
        server__trusted_proxies="127.0.0.1, 10.0.0.0/8",
        limits__token__burst="2",
        limits__token__rate_per_s="0.001",
    )
    client = await aiohttp_client(create_app(config))
    assert config.server.trusted_proxies == ["127.0.0.1", "10.0.0.0/8"]
    assert 429 not in await token_requests(client, "198.51.100.1", 2)
    assert (await token_requests(client, "198.51.100.1", 1)) == [429]
    # Another client behind the same proxy has its own bucket; a forged left part does not help.
    assert 429 not in await token_requests(client, "198.51.100.2", 2)
    assert (await token_requests(client, "198.51.100.1, 198.51.100.2", 1)) == [429]


async def test_without_trusted_proxies_the_header_is_ignored(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    config = config_of(tmp_path, limits__token__burst="2", limits__token__rate_per_s="0.001")
    client = await aiohttp_client(create_app(config))
    assert 429 not in await token_requests(client, "198.51.100.1", 2)
    assert (await token_requests(client, "198.51.100.2", 1)) == [429]
