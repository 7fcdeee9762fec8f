"""Acting as an authenticated provider in HTTP tests."""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import web

from gateway.http.keys import PRINCIPAL
from gateway.service.principal import Principal

ALL_SCOPES = ("messages", "events", "keys", "lookup", "media")
_HEADER = "X-Test-Provider"


def provider_headers(client_id: str, scopes: Iterable[str] = ALL_SCOPES) -> dict[str, str]:
    return {_HEADER: f"{client_id} {','.join(scopes)}"}


@web.middleware
async def test_principal_middleware(request: web.Request, handler):  # type: ignore[no-untyped-def]
    value = request.headers.get(_HEADER)
    if value:
        client_id, _, scopes = value.partition(" ")
        request[PRINCIPAL] = Principal(
            kind="provider", client_id=client_id, scopes=frozenset(scopes.split(","))
        )
    return await handler(request)
