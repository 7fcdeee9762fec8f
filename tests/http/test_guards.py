from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web

from gateway.app import create_app
from gateway.config import Config
from gateway.http.body import json_response
from gateway.http.guards import principal, require_admin
from tests.conftest import ADMIN_TOKEN, assert_problem


async def admin_only(request: web.Request) -> web.Response:
    require_admin(request)
    return json_response({"kind": principal(request).kind})


@pytest.fixture
async def guarded(aiohttp_client: Any, config: Config) -> Any:
    app = create_app(config)
    app.router.add_get("/test/admin", admin_only)
    return await aiohttp_client(app)


async def test_admin_token_lets_in(guarded: Any) -> None:
    response = await guarded.get("/test/admin", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert response.status == 200
    assert await response.json() == {"kind": "admin"}


@pytest.mark.parametrize(
    "header", [None, "Bearer wrong", f"Basic {ADMIN_TOKEN}", "Bearer ", f"Bearer {ADMIN_TOKEN}x"]
)
async def test_anything_else_is_401(guarded: Any, header: str | None) -> None:
    headers = {"Authorization": header} if header is not None else {}
    response = await guarded.get("/test/admin", headers=headers)
    body = await response.json(content_type=None)
    assert_problem(response.status, response.content_type, body, 401, "/problems/unauthorized")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert ADMIN_TOKEN not in await response.text()
