"""`POST /sandbox/v1/groups` and group sends through `/sandbox/v1/send` (DESIGN §4.8, §4.10),
on the real app with the group service replaced by `FakeGroupSink`."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.http.app_keys import SANDBOX
from tests.conftest import admin_headers, assert_problem
from tests.platforms.test_sandbox_groups import FakeGroupSink, mimi_text


@pytest.fixture
async def sandbox_client(backend_client: Any) -> tuple[Any, FakeGroupSink]:
    sink = FakeGroupSink()
    backend_client.app[SANDBOX].groups = sink
    return backend_client, sink


async def user(client: Any, service: str, native: str) -> str:
    body = {"service": service, "id": native, "name": "U", "consent": "all"}
    response = await client.post("/sandbox/v1/users", json=body, headers=admin_headers())
    assert response.status == 201
    return str((await response.json())["uri"])


async def post(client: Any, path: str, body: dict[str, Any]) -> tuple[int, str, Any]:
    response = await client.post(path, json=body, headers=admin_headers())
    return response.status, response.content_type, await response.json()


async def test_a_sandbox_user_creates_a_group_and_sends_to_it(
    sandbox_client: tuple[Any, FakeGroupSink],
) -> None:
    client, sink = sandbox_client
    wa = await user(client, "whatsapp", "15550001")
    wa2 = await user(client, "whatsapp", "15550002")
    body = {"service": "whatsapp", "creator": wa, "name": "Team", "members": [wa2]}
    status, _, state = await post(client, "/sandbox/v1/groups", body)
    assert status == 201
    assert state["members"] == [{"uri": wa, "role": "admin"}, {"uri": wa2, "role": "member"}]
    assert state == sink.groups[state["group"]]
    send = {"from": wa, "to": state["group"], "content": mimi_text("hello")}
    status, _, sent = await post(client, "/sandbox/v1/send", send)
    assert (status, sent) == (202, {"id": "gm_1"})
    assert [s["to"] for s in sink.shares[0]["shares"]] == [wa2]
    assert sink.messages[0]["payload"]["encrypted"]["protocol"] == "megolm.v1"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": ""}, "$.name"),
        ({"service": "telegram"}, "$.service"),
        ({"members": "x"}, "$.members"),
        ({"extra": 1}, "$.extra"),
    ],
)
async def test_group_creation_is_validated(
    sandbox_client: tuple[Any, FakeGroupSink], change: dict[str, Any], field: str
) -> None:
    client, sink = sandbox_client
    wa = await user(client, "whatsapp", "15550001")
    body = {"service": "whatsapp", "creator": wa, "name": "Team", "members": []} | change
    status, ctype, problem = await post(client, "/sandbox/v1/groups", body)
    assert_problem(status, ctype, problem, 422, "/problems/validation")
    assert problem["field"] == field
    assert sink.groups == {}


async def test_group_creation_refuses_unknown_or_foreign_creators_and_passes_sink_errors(
    sandbox_client: tuple[Any, FakeGroupSink],
) -> None:
    client, sink = sandbox_client
    wa = await user(client, "whatsapp", "15550001")
    body = {"service": "whatsapp", "creator": "mimi://whatsapp/u/9", "name": "T", "members": []}
    status, ctype, problem = await post(client, "/sandbox/v1/groups", body)
    assert_problem(status, ctype, problem, 404, "/problems/not-found")
    assert problem["field"] == "$.creator"
    status, ctype, problem = await post(client, "/sandbox/v1/groups", body | {
        "creator": wa, "service": "messenger"})  # fmt: skip
    assert_problem(status, ctype, problem, 422, "/problems/validation")
    assert problem["field"] == "$.creator"
    status, ctype, problem = await post(client, "/sandbox/v1/groups", body | {
        "creator": wa, "members": ["mimi://acme/u/nobody"]})  # fmt: skip
    assert_problem(status, ctype, problem, 404, "/problems/unknown-recipient")
    assert sink.groups == {}
