"""A resolver for tests: fixed answers (the test machine has no DNS) that can change mid-test."""

from __future__ import annotations

import socket

from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from gateway.http.app_keys import EGRESS_RESOLVER

# Names the tests register as webhook hosts: a public address (the TEST-NET documentation
# ranges are not global, so the policy refuses them) and loopback.
TEST_HOSTS: dict[str, list[str]] = {
    "hooks.example.org": ["93.184.215.14"],
    "localhost": ["127.0.0.1", "::1"],
}


class StaticResolver(AbstractResolver):
    """Answers from `hosts`; an unknown name fails like a name that does not exist."""

    def __init__(self, hosts: dict[str, list[str]] | None = None) -> None:
        self.hosts = dict(TEST_HOSTS if hosts is None else hosts)
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        if host not in self.hosts:
            raise OSError(socket.EAI_NONAME, f"{host} does not resolve")
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET6 if ":" in address else socket.AF_INET,
                "proto": 0,
                "flags": 0,
            }
            for address in self.hosts[host]
        ]

    async def close(self) -> None:
        pass


def with_test_hosts(app: web.Application) -> web.Application:
    """`app`, resolving webhook hosts from TEST_HOSTS instead of DNS."""
    app[EGRESS_RESOLVER] = StaticResolver()
    return app
