"""The connection's edge: the client address behind trusted proxies, and slow request bodies."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web
from aiohttp.streams import StreamReader
from aiohttp.typedefs import Middleware

from gateway.errors import RequestTimeout

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_address(peer: str | None, forwarded_for: str, trusted: Iterable[Network]) -> str | None:
    """The client's address: the peer, unless it is a trusted proxy; then, walking
    X-Forwarded-For from the right (each proxy appends the address it saw), the first address
    that is not a trusted proxy. The left part is the client's own say and never believed."""
    nets = list(trusted)

    def is_trusted(address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in nets)

    if peer is None or not is_trusted(peer):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not is_trusted(hop):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer  # garbage where an address should be: the proxy is the client
    return hops[0] if hops else peer


def forwarded_middleware(trusted_proxies: Iterable[str]) -> Middleware:
    """`request.remote` becomes the client behind trusted proxies (per-IP limits key on it)."""
    nets = [ipaddress.ip_network(p, strict=False) for p in trusted_proxies]

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not nets:
            return await handler(request)
        remote = client_address(request.remote, request.headers.get("X-Forwarded-For", ""), nets)
        if remote is not None and remote != request.remote:
            request = request.clone(remote=remote)
        return await handler(request)

    return middleware


def body_timeout_middleware(timeout_s: float) -> Middleware:
    """A body still incomplete `timeout_s` after its head is refused with 408 (the connection
    then closes), so slow senders cannot hold handlers and connections (slowloris)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        content = request.content
        if content.is_eof():  # no body, or all of it here already
            return await handler(request)
        expired = asyncio.Event()
        timer = asyncio.get_running_loop().call_later(timeout_s, _expire, content, expired)
        try:
            return await handler(request)
        except TimeoutError:
            if expired.is_set():
                raise RequestTimeout(
                    f"The request body did not arrive within {timeout_s:g} s.",
                    headers={"Connection": "close"},
                ) from None
            raise
        finally:
            timer.cancel()

    return middleware


def _expire(content: StreamReader, expired: asyncio.Event) -> None:
    if not content.is_eof():
        expired.set()
        # A pending or later read raises; aiohttp's own lingering read then gives up too.
        content.set_exception(TimeoutError())
