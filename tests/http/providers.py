"""Acting as an authenticated provider in HTTP tests.

`provider_headers(client_id, scopes)` marks a request; `test_principal_middleware`, placed
outermost, registers that provider in storage and swaps the mark for a real access token, so
the request goes through the real authentication (tests.onboarding_helpers.register_provider).
Wire it with `act_as_providers(app)`: appended after auth_middleware it would come too late.
"""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import web

from tests.onboarding_helpers import register_provider

ALL_SCOPES = ("messages", "events", "keys", "lookup", "media")
_HEADER = "X-Test-Provider"


def provider_headers(client_id: str, scopes: Iterable[str] = ALL_SCOPES) -> dict[str, str]:
    return {_HEADER: f"{client_id} {','.join(scopes)}"}


@web.middleware
async def test_principal_middleware(request: web.Request, handler):  # type: ignore[no-untyped-def]
    value = request.headers.get(_HEADER)
    if value:
        client_id, _, scopes = value.partition(" ")
        token = await register_provider(request.app, client_id, scopes.split(","))
        headers = request.headers.copy()
        del headers[_HEADER]
        headers["Authorization"] = f"Bearer {token}"
        request = request.clone(headers=headers)
    return await handler(request)


def act_as_providers(app: web.Application) -> web.Application:
    """Let `provider_headers` work on `app`: test_principal_middleware goes outermost."""
    app.middlewares.insert(0, test_principal_middleware)
    return app
