"""No request body, JSON or CBOR, well-formed or not, makes any write route answer 5xx."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cbor2
import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gateway.app import create_app
from tests.conftest import admin_headers, make_config
from tests.http.relay_support import sandbox_user
from tests.onboarding_helpers import register_provider

CLIENT_ID = "fuzzer"

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)
cbor_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**200), 2**200)
    | st.binary(max_size=16)
    | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=7)
        | st.dictionaries(st.integers(-(2**200), 2**200) | st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=20,
)


def _nested(depth: int, obj: bool) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth if obj else b"[" * depth + b"]" * depth


depths = st.sampled_from([3, 60, 300, 900, 3_000, 20_000])
deep_json = st.builds(_nested, depths, st.booleans())
# A huge integer as a map key: its decimal form alone exceeds Python's int-to-str limit.


def _huge_key_cbor(digits: int) -> bytes:
    return cbor2.dumps([b"\0" * 16, None, b"", None, None, {10**digits: 1}, [0, "", 0]])


def _deep_cbor(depth: int) -> bytes:
    return b"\x81" * depth + b"\x80"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


huge_key_cbor = st.integers(5_000, 6_000).map(_huge_key_cbor)
deep_cbor = depths.map(_deep_cbor)
cbor_bodies = st.one_of(
    cbor_values.map(cbor2.dumps),
    huge_key_cbor,
    deep_cbor,
    st.lists(cbor_values, min_size=7, max_size=7).map(cbor2.dumps),
    st.binary(max_size=64),
)


def _message(content: dict[str, Any]) -> bytes:
    return json.dumps(
        {
            "id": "m-1",
            "from": f"mimi://{CLIENT_ID}/u/alice",
            "to": "mimi://whatsapp/u/4915112345678",
            "sent_at": 1,
            **content,
        }
    ).encode()


def _message_raw(member: bytes) -> bytes:
    """A message whose last member is `member`, raw JSON (too deep for json.dumps)."""
    return _message({})[:-1] + b", " + member + b"}"


message_bodies = st.one_of(
    cbor_bodies.map(lambda b: _message({"content_cbor": b64(b)})),
    json_values.map(lambda v: _message({"content": v})),
    deep_json.map(lambda b: b.replace(b"1", b'{"content": 1}', 1)),
)
json_bodies = st.one_of(
    json_values.map(lambda v: json.dumps(v).encode()),
    deep_json,
    st.binary(max_size=64),
)
bodies = st.one_of(
    st.tuples(st.just("application/json"), json_bodies | message_bodies),
    st.tuples(st.just("application/mimi-content"), cbor_bodies),
    st.tuples(st.just("application/cbor"), cbor_bodies),
    st.tuples(st.just("application/x-www-form-urlencoded"), st.binary(max_size=64)),
)


message_bodies_by_type = st.one_of(st.tuples(st.just("application/json"), message_bodies), bodies)


def _concrete(path: str) -> str:
    return re.sub(r"\{([^}]+)\}", lambda m: "whatsapp" if m[1] == "service" else "x1", path)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[asyncio.AbstractEventLoop, TestClient[Any, Any]]]:
    """A live app on its own loop, so that hypothesis can drive it from a plain function."""

    async def start() -> TestClient[Any, Any]:
        client: TestClient[Any, Any] = TestClient(TestServer(create_app(make_config(tmp_path))))
        await client.start_server()
        return client

    loop = asyncio.new_event_loop()
    try:
        client = loop.run_until_complete(start())
        try:
            yield loop, client
        finally:
            loop.run_until_complete(client.close())
    finally:
        loop.close()


ROUTES = sorted(
    {
        (route.method, _concrete(route.resource.canonical))
        for route in create_app(make_config(Path("unused"))).router.routes()
        if route.method in ("POST", "PUT", "PATCH") and route.resource is not None
    }
)


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_no_body_yields_a_5xx(
    served: tuple[asyncio.AbstractEventLoop, TestClient[Any, Any]], method: str, path: str
) -> None:
    loop, client = served
    token = loop.run_until_complete(register_provider(client.app, CLIENT_ID))
    loop.run_until_complete(sandbox_user(client, "whatsapp", "4915112345678", (CLIENT_ID,)))
    auth = (
        admin_headers()
        if path.startswith(("/admin/", "/sandbox/"))
        else {"Authorization": f"Bearer {token}"}
    )

    async def send(ctype: str, body: bytes) -> int:
        response = await client.request(
            method, path, data=body, headers={**auth, "Content-Type": ctype}
        )
        await response.read()
        if response.status >= 400 and path != "/v1/oauth/token":  # RFC 6749 §5.2 errors
            assert response.content_type == "application/problem+json"
        return response.status

    @settings(
        max_examples=40,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(body=message_bodies_by_type if path == "/v1/messages" else bodies)
    @example(body=("application/json", _nested(20_000, True)))
    @example(body=("application/json", _nested(20_000, False)))
    @example(
        body=(
            "application/json",
            _message_raw(b'"content": {"x": ' + _nested(20_000, False) + b"}"),
        )
    )
    @example(body=("application/json", _message_raw(b'"content": ' + _nested(20_000, True))))
    @example(body=("application/json", _message({"content_cbor": b64(_huge_key_cbor(5_000))})))
    @example(body=("application/json", _message({"content_cbor": b64(_deep_cbor(900))})))
    @example(body=("application/mimi-content", _huge_key_cbor(5_000)))
    @example(body=("application/mimi-content", _deep_cbor(900)))
    def check(body: tuple[str, bytes]) -> None:
        status = loop.run_until_complete(send(*body))
        assert status < 500, (body[0], status)

    check()
