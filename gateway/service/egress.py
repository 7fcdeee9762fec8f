"""Requests to places third parties name (webhooks): checked destination, no redirects, capped.

A provider chooses its webhook URL. Sent there blindly, a signed batch could reach the gateway's
own loopback, the cloud metadata service (169.254.169.254) or the private network, and whether
it was acknowledged would tell the provider which internal host and port answered (SSRF, OWASP
SSRF Prevention Cheat Sheet). So a destination is resolved and every address it resolves to is
checked against a `DestinationPolicy`, at registration and at each request; the connector
connects only to the addresses its resolver checked, so a DNS answer that changes between check
and connect (rebinding) changes nothing. Redirects are not followed and replies are read up to
a small cap.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

# A webhook answers with a status; its body is not needed beyond this much.
MAX_REPLY_BYTES = 64 * 1024

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT, RFC 6598
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # well-known NAT64 prefix, RFC 6052


class DestinationRefused(OSError):
    """A destination the policy does not allow (an OSError, as aiohttp expects of resolvers)."""

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(f"{host}: {reason}")
        self.host = host
        self.reason = reason


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, NAT64, 6to4, Teredo), if any."""
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    return None


@dataclass(frozen=True)
class DestinationPolicy:
    """Which addresses outbound requests may connect to: public ones (loopback if allowed)."""

    allow_loopback: bool = False

    def refusal(self, address: str) -> str | None:
        """Why `address` may not be connected to (e.g. "a private address"); None if it may."""
        try:
            ip: IPAddress = ipaddress.ip_address(address)
        except ValueError:
            return "not a canonical IP address"
        ip = _embedded_ipv4(ip) or ip
        if ip.is_loopback:
            return None if self.allow_loopback else "a loopback address"
        if ip.is_unspecified:
            return "an unspecified address"
        if ip.is_link_local:
            return "a link-local address"
        if ip.is_multicast:
            return "a multicast address"
        if ip.is_private:
            return "a private address"
        if ip.is_reserved:
            return "a reserved address"
        if ip in _SHARED:
            return "a shared (carrier-grade NAT) address"
        if not ip.is_global:
            return "not a public address"
        return None


def _looks_like_ip(host: str) -> bool:
    # What aiohttp's connector takes for an address and connects to without resolving it.
    return ":" in host or host.replace(".", "").isdigit()


class CheckedResolver(AbstractResolver):
    """Resolves with `inner` and refuses the name unless every address passes the policy."""

    def __init__(self, policy: DestinationPolicy, inner: AbstractResolver | None = None) -> None:
        self._policy = policy
        self._inner = inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if self._inner is None:
            self._inner = aiohttp.ThreadedResolver()
        try:
            results = await self._inner.resolve(host, port, family)
        except OSError as exc:
            raise DestinationRefused(host, "does not resolve") from exc
        if not results:
            raise DestinationRefused(host, "does not resolve")
        for result in results:
            refusal = self._policy.refusal(result["host"])
            if refusal is not None:
                raise DestinationRefused(host, f"resolves to {refusal}")
        return results

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()


class Egress:
    """Outbound HTTP to destinations third parties chose, under a `DestinationPolicy`."""

    def __init__(
        self,
        policy: DestinationPolicy,
        *,
        resolver: AbstractResolver | None = None,
        max_reply_bytes: int = MAX_REPLY_BYTES,
    ) -> None:
        self.policy = policy
        self._resolver = CheckedResolver(policy, resolver)
        self._max_reply_bytes = max_reply_bytes
        self._session: aiohttp.ClientSession | None = None

    async def check(self, host: str, port: int = 0) -> None:
        """Raise DestinationRefused unless `host` (a name or an address) may be connected to."""
        if _looks_like_ip(host):
            refusal = self.policy.refusal(host)
            if refusal is not None:
                raise DestinationRefused(host, f"is {refusal}")
            return
        await self._resolver.resolve(host, port, socket.AF_UNSPEC)

    async def post(
        self, url: str, *, data: bytes, headers: Mapping[str, str], timeout_s: float
    ) -> int:
        """POST `data` to `url` without following redirects; return the reply's status.

        The reply body is read up to the cap, then the connection is dropped. Raises
        DestinationRefused for a destination the policy refuses, aiohttp.ClientError or
        TimeoutError when the request fails.
        """
        host = URL(url).host or ""
        if _looks_like_ip(host):
            await self.check(host)  # the connector resolves names only: check addresses here
        if self._session is None:
            connector = aiohttp.TCPConnector(resolver=self._resolver, use_dns_cache=False)
            self._session = aiohttp.ClientSession(connector=connector)
        try:
            async with self._session.post(
                url,
                data=data,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout_s),
                allow_redirects=False,
            ) as response:
                await self._read_capped(response)
                return response.status
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, DestinationRefused):
                raise exc.os_error from None
            raise

    async def _read_capped(self, response: aiohttp.ClientResponse) -> None:
        left = self._max_reply_bytes
        while left > 0:
            chunk = await response.content.read(left)
            if not chunk:
                return
            left -= len(chunk)
        if not response.content.at_eof():
            response.close()  # the rest is not read: drop the connection instead

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        await self._resolver.close()
