"""The OpenAPI document matches behaviour: schemathesis drives every documented operation of a
served gateway (fixed seed, few examples each) and checks each answer against the document."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")

from aiohttp import web  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402

from gateway.app import create_app  # noqa: E402
from gateway.http.server import GatewayRunner  # noqa: E402
from tests.conftest import ADMIN_TOKEN, REPO, make_config  # noqa: E402
from tests.onboarding_helpers import register_provider  # noqa: E402

SCHEMA = schemathesis.openapi.from_path(REPO / "specs" / "openapi.json")
OPERATIONS = [
    result.ok()
    for result in SCHEMA.get_all_operations()
    if result.ok().path != "/v1/events/ws"  # a WebSocket upgrade, not a request/response
]
EXAMPLES_PER_OPERATION = 30
# No 5xx; every status, content type and body as documented. (Not "schema-valid input is
# accepted": semantic checks such as key signatures or consent refuse most generated data.)
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
]


class Served:
    """The gateway on a free port, its loop in a thread (schemathesis calls are blocking)."""

    def __init__(self, data_dir: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.app = create_app(make_config(data_dir))
        self.runner = GatewayRunner(self.app)
        self.call(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.call(site.start())
        port = self.runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def close(self) -> None:
        self.call(self.runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    served = Served(tmp_path_factory.mktemp("contract"))
    yield served
    served.close()


def _auth(served: Served, operation: Any) -> dict[str, str]:
    requirements = operation.definition.raw.get("security", [])
    schemes = {name for requirement in requirements for name in requirement}
    if "adminToken" in schemes:
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    if schemes & {"providerToken", "providerOAuth"}:
        token = served.call(register_provider(served.app, "contract"))
        return {"Authorization": f"Bearer {token}"}
    return {}


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: f"{op.method.upper()} {op.path}")
def test_operation_conforms_to_the_document(served: Served, operation: Any) -> None:
    headers = _auth(served, operation)

    # Long polls answer at once: the contract is about shapes, not waiting.
    query = {"wait": 0} if operation.path == "/v1/events" else None
    strategy = st.one_of(
        operation.as_strategy(mode, headers=headers, query=query)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    )

    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def check(case: Any) -> None:
        response = case.call(base_url=served.base_url, timeout=10)
        case.validate_response(response, checks=CHECKS)

    check()
