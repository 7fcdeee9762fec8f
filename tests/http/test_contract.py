"""The OpenAPI document matches behaviour: schemathesis drives every documented operation of a
served gateway (fixed seed, few examples each) and checks each answer against the document."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402

from tests.conftest import ADMIN_TOKEN, REPO  # noqa: E402
from tests.onboarding_helpers import register_provider  # noqa: E402
from tests.served import Served  # noqa: E402

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
