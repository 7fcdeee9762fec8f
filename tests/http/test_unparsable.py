"""Requests aiohttp's HTTP parser refuses still get problem+json, without echoing their bytes."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.app import create_app
from gateway.config import Config
from gateway.http.server import GatewayRunner

SECRET = "s3cr3t-4915112345678"


class GatewayTestServer(TestServer):
    async def _make_runner(self, **kwargs: Any) -> web.BaseRunner:
        return GatewayRunner(self.app, **kwargs)


@pytest.fixture
async def server(config: Config) -> Any:
    server = GatewayTestServer(create_app(config))
    await server.start_server()
    yield server
    await server.close()


async def exchange(server: Any, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(raw)
    await writer.drain()
    data = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


MALFORMED = {
    "header-name": f"GET /healthz HTTP/1.1\r\nHost: a\r\nBad Header {SECRET}: v\r\n\r\n",
    "request-line": f"GET /healthz {SECRET}\r\nHost: a\r\n\r\n",
    "method": f"G@T /{SECRET} HTTP/1.1\r\nHost: a\r\n\r\n",
    "content-length": f"POST /healthz HTTP/1.1\r\nHost: a\r\nContent-Length: {SECRET}\r\n\r\n",
    "line-too-long": f"GET /{'a' * 20_000}{SECRET} HTTP/1.1\r\nHost: a\r\n\r\n",
}


@pytest.mark.parametrize("raw", MALFORMED.values(), ids=MALFORMED.keys())
async def test_unparsable_request_is_a_problem_without_echo(server: Any, raw: str) -> None:
    status, headers, body = await exchange(server, raw.encode())
    assert 400 <= status < 500
    assert headers["content-type"] == "application/problem+json"
    problem = json.loads(body)
    assert problem["status"] == status
    assert problem["type"].startswith("/problems/")
    assert problem["title"] and problem["detail"]
    assert SECRET.encode() not in body


async def test_well_formed_requests_are_served_as_before(server: Any) -> None:
    status, _, _ = await exchange(
        server, b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    )
    assert status == 200
