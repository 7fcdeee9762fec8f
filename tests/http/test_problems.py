"""Every failure is problem+json with the right status, through real HTTP."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
import structlog
from aiohttp import web

from gateway.app import create_app
from gateway.config import Config
from gateway.http.body import decode_json, json_response
from tests.conftest import assert_problem


class Echo(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str
    count: int = msgspec.field(default=1)
    tags: list[str] = []


async def echo(request: web.Request) -> web.Response:
    return json_response(await decode_json(request, Echo), status=201)


async def explode(request: web.Request) -> web.Response:
    raise RuntimeError("secret internal detail /etc/passwd")


@pytest.fixture
async def probe(aiohttp_client: Any, config: Config) -> Any:
    app = create_app(config)
    # Test-only routes: the middleware is what is under test here.
    app.router.add_post("/test/echo", echo)
    app.router.add_get("/test/explode", explode)
    return await aiohttp_client(app)


async def problem(response: Any, status: int, type_: str) -> dict[str, Any]:
    body = await response.json(content_type=None)
    assert_problem(response.status, response.content_type, body, status, type_)
    return body


async def test_router_404(probe: Any) -> None:
    await problem(await probe.get("/nope"), 404, "/problems/not-found")


async def test_router_405_lists_allowed_methods(probe: Any) -> None:
    response = await probe.delete("/healthz")
    body = await problem(response, 405, "/problems/method-not-allowed")
    assert "GET" in response.headers["Allow"]
    assert "DELETE" in body["detail"]


async def test_valid_body_passes(probe: Any) -> None:
    response = await probe.post("/test/echo", json={"name": "x"})
    assert response.status == 201
    assert await response.json() == {"name": "x", "count": 1, "tags": []}


async def test_malformed_json(probe: Any) -> None:
    response = await probe.post(
        "/test/echo", data=b'{"name": ', headers={"Content-Type": "application/json"}
    )
    await problem(response, 400, "/problems/malformed-json")


async def test_wrong_content_type(probe: Any) -> None:
    response = await probe.post(
        "/test/echo", data=b"name=x", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    body = await problem(response, 415, "/problems/unsupported-media-type")
    assert body["field"] == "Content-Type"


async def test_invalid_utf8(probe: Any) -> None:
    response = await probe.post(
        "/test/echo", data=b'{"name": "\xff\xfe"}', headers={"Content-Type": "application/json"}
    )
    await problem(response, 400, "/problems/invalid-encoding")


async def test_body_over_the_limit(aiohttp_client: Any, config: Config) -> None:
    small = msgspec.structs.replace(
        config, server=msgspec.structs.replace(config.server, max_body_bytes=64)
    )
    app = create_app(small)
    app.router.add_post("/test/echo", echo)
    client = await aiohttp_client(app)
    response = await client.post("/test/echo", json={"name": "x" * 100})
    body = await problem(response, 413, "/problems/payload-too-large")
    assert "64" in body["detail"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"name": 3}, "$.name"),
        ({"name": "x", "tags": ["a", 2]}, "$.tags[1]"),
        ({}, "$.name"),
        ({"name": "x", "extra": True}, "$.extra"),
        ([1, 2], "$"),
    ],
)
async def test_validation_errors_name_the_field(probe: Any, payload: Any, field: str) -> None:
    body = await problem(await probe.post("/test/echo", json=payload), 422, "/problems/validation")
    assert body["field"] == field


async def test_unexpected_error_is_a_bare_500_and_logged(probe: Any) -> None:
    with structlog.testing.capture_logs() as logs:
        response = await probe.get("/test/explode")
    body = await problem(response, 500, "about:blank")
    assert "secret" not in await response.text()
    assert "RuntimeError" not in body["detail"]
    errors = [e for e in logs if e["event"] == "unhandled_error"]
    assert errors and errors[0]["log_level"] == "error"
    assert errors[0].get("exc_info")


def test_the_general_problem_of_each_status_comes_from_the_error_classes() -> None:
    from gateway import errors

    assert errors.problem_for_status(404) is errors.NotFound
    assert errors.problem_for_status(409) is errors.Conflict
    assert errors.problem_for_status(422) is errors.ValidationFailed
    assert errors.problem_for_status(503) is errors.Unavailable
    assert errors.problem_for_status(418) is None
    # A more specific class never stands for its status in general.
    for status in (400, 401, 403, 404, 405, 409, 413, 415, 422, 429, 503):
        general = errors.problem_for_status(status)
        assert general is not None
        assert general.status == status
        assert general.__mro__[1].__dict__.get("status") != status
