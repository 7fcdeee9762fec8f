"""Outbound requests to third-party destinations: address policy, rebinding, redirects, cap."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web

from gateway.service.egress import DestinationPolicy, DestinationRefused, Egress
from tests.egress_helpers import StaticResolver

REFUSED = [
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("192.168.1.1", "private"),
    ("169.254.169.254", "link-local"),
    ("127.0.0.1", "loopback"),
    ("127.9.9.9", "loopback"),
    ("::1", "loopback"),
    ("fd00::1", "private"),
    ("fe80::1", "link-local"),
    ("224.0.0.1", "multicast"),
    ("ff02::1", "multicast"),
    ("0.0.0.0", "unspecified"),
    ("::", "unspecified"),
    ("0.1.2.3", "private"),
    ("100.64.0.1", "shared"),
    ("240.0.0.1", "private"),
    ("255.255.255.255", "private"),
    ("192.0.2.1", "private"),
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:10.0.0.1", "private"),
    ("::ffff:169.254.169.254", "link-local"),
    ("64:ff9b::a00:1", "private"),
    ("2002:a00:1::1", "private"),
    ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "private"),  # Teredo client 10.0.0.1
    ("2130706433", "canonical"),
]


@pytest.mark.parametrize(("address", "kind"), REFUSED)
def test_internal_addresses_are_refused(address: str, kind: str) -> None:
    refusal = DestinationPolicy().refusal(address)
    assert refusal is not None
    assert kind in refusal


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert DestinationPolicy().refusal(address) is None


def test_the_development_setting_allows_loopback_and_nothing_else() -> None:
    policy = DestinationPolicy(allow_loopback=True)
    assert policy.refusal("127.0.0.1") is None
    assert policy.refusal("::1") is None
    assert policy.refusal("::ffff:127.0.0.1") is None
    assert policy.refusal("10.0.0.1") is not None
    assert policy.refusal("169.254.169.254") is not None


async def test_a_name_is_refused_when_any_of_its_addresses_is() -> None:
    resolver = StaticResolver(
        {"mixed.example.org": ["93.184.215.14", "10.0.0.7"], "ok.example.org": ["8.8.8.8"]}
    )
    egress = Egress(DestinationPolicy(), resolver=resolver)
    await egress.check("ok.example.org", 443)
    with pytest.raises(DestinationRefused) as refused:
        await egress.check("mixed.example.org", 443)
    assert refused.value.reason == "resolves to a private address"
    with pytest.raises(DestinationRefused) as unknown:
        await egress.check("nowhere.example.org", 443)
    assert unknown.value.reason == "does not resolve"
    with pytest.raises(DestinationRefused):
        await egress.check("169.254.169.254", 80)


class Hits:
    def __init__(self) -> None:
        self.paths: list[tuple[str, str]] = []
        self.sent = 0
        self.finished = asyncio.Event()


@pytest.fixture
async def server(aiohttp_server: Any) -> Any:
    hits = Hits()

    async def record(request: web.Request) -> web.Response:
        hits.paths.append((request.method, request.path))
        return web.Response(status=204)

    async def redirect_307(request: web.Request) -> web.Response:
        hits.paths.append((request.method, request.path))
        raise web.HTTPTemporaryRedirect("/target")

    async def redirect_302(request: web.Request) -> web.Response:
        hits.paths.append((request.method, request.path))
        raise web.HTTPFound("/target")

    async def huge(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=200)
        await response.prepare(request)
        chunk = b"x" * 65536
        try:
            for _ in range(400 * 16):  # 400 MB
                await response.write(chunk)
                hits.sent += len(chunk)
        except (ConnectionError, RuntimeError):
            pass  # the client hung up
        finally:
            hits.finished.set()
        return response

    app = web.Application()
    app.router.add_post("/hook", record)
    app.router.add_route("*", "/target", record)
    app.router.add_post("/307", redirect_307)
    app.router.add_post("/302", redirect_302)
    app.router.add_post("/huge", huge)
    return await aiohttp_server(app), hits


async def post(egress: Egress, url: str) -> int:
    return await egress.post(url, data=b"{}", headers={}, timeout_s=30)


async def test_loopback_is_refused_unless_the_development_setting_allows_it(server: Any) -> None:
    srv, hits = server
    url = f"http://127.0.0.1:{srv.port}/hook"
    refusing = Egress(DestinationPolicy(), resolver=StaticResolver())
    with pytest.raises(DestinationRefused) as refused:
        await post(refusing, url)
    assert refused.value.reason == "is a loopback address"
    named = StaticResolver({"hook.example.org": ["127.0.0.1"]})
    by_name = Egress(DestinationPolicy(), resolver=named)
    with pytest.raises(DestinationRefused):
        await post(by_name, f"http://hook.example.org:{srv.port}/hook")
    assert hits.paths == []
    allowing = Egress(DestinationPolicy(allow_loopback=True), resolver=StaticResolver())
    try:
        assert await post(allowing, url) == 204
    finally:
        await allowing.close()
        await refusing.close()
        await by_name.close()
    assert hits.paths == [("POST", "/hook")]


@pytest.mark.parametrize("path", ["/307", "/302"])
async def test_redirects_are_not_followed(server: Any, path: str) -> None:
    srv, hits = server
    egress = Egress(DestinationPolicy(allow_loopback=True), resolver=StaticResolver())
    try:
        status = await post(egress, f"http://127.0.0.1:{srv.port}{path}")
    finally:
        await egress.close()
    assert status in (302, 307)
    assert hits.paths == [("POST", path)]  # /target never reached


async def test_a_name_rebound_to_an_internal_address_is_refused_at_push(server: Any) -> None:
    srv, hits = server
    resolver = StaticResolver({"hook.example.org": ["127.0.0.1"]})
    egress = Egress(DestinationPolicy(allow_loopback=True), resolver=resolver)
    url = f"http://hook.example.org:{srv.port}/hook"
    try:
        assert await post(egress, url) == 204  # connected to the address it checked
        resolver.hosts["hook.example.org"] = ["10.0.0.8"]
        await egress.close()  # no kept-alive connection: the next post connects anew
        egress = Egress(DestinationPolicy(allow_loopback=True), resolver=resolver)
        with pytest.raises(DestinationRefused) as refused:
            await post(egress, url)
    finally:
        await egress.close()
    assert refused.value.reason == "resolves to a private address"
    assert hits.paths == [("POST", "/hook")]
    assert resolver.asked == ["hook.example.org", "hook.example.org"]


async def test_each_connection_resolves_and_checks_anew(server: Any) -> None:
    srv, _ = server
    resolver = StaticResolver({"hook.example.org": ["127.0.0.1"]})
    egress = Egress(DestinationPolicy(allow_loopback=True), resolver=resolver)
    url = f"http://hook.example.org:{srv.port}/huge"
    try:
        await post(egress, url)  # the connection is dropped after the cap
        resolver.hosts["hook.example.org"] = ["169.254.169.254"]
        with pytest.raises(DestinationRefused):
            await post(egress, url)
    finally:
        await egress.close()


async def test_a_huge_reply_is_not_read_past_the_cap(server: Any) -> None:
    srv, hits = server
    egress = Egress(
        DestinationPolicy(allow_loopback=True), resolver=StaticResolver(), max_reply_bytes=4096
    )
    try:
        assert await post(egress, f"http://127.0.0.1:{srv.port}/huge") == 200
    finally:
        await egress.close()
    await asyncio.wait_for(hits.finished.wait(), 10)
    assert hits.sent < 64 * 1024 * 1024  # far from the 400 MB offered: the client hung up
