"""Every id crossing the API is matched exactly: a trailing newline, CR or NUL is refused."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest

from tests.conftest import admin_headers
from tests.http.providers import provider_headers
from tests.http.relay_support import sandbox_user
from tests.http.test_interop_requests import intake

ENDINGS = ["\n", "\r", "\x00"]
PHONE = "4915112345678"


def message(**overrides: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "m-1",
        "from": "mimi://acme/u/alice",
        "to": f"mimi://instagram/u/{PHONE}",
        "sent_at": 1,
        "content": {
            "nestedPart": {
                "cardinality": "single",
                "contentType": "text/plain;charset=utf-8",
                "content": "aGk",
            }
        },
    }
    return body | overrides


async def refused(response: Any) -> dict[str, Any]:
    assert 400 <= response.status < 500, await response.text()
    assert response.content_type == "application/problem+json"
    return dict(await response.json())


@pytest.mark.parametrize("ending", ENDINGS, ids=repr)
@pytest.mark.parametrize("member", ["id", "from", "to"])
async def test_message_ids_with_a_control_ending_are_refused(
    pclient: Any, member: str, ending: str
) -> None:
    await sandbox_user(pclient, "instagram", PHONE)
    body = message()
    body[member] += ending
    response = await pclient.post("/v1/messages", json=body, headers=provider_headers("acme"))
    problem = await refused(response)
    assert problem["field"] == f"$.{member}"


async def test_the_same_message_without_the_ending_is_accepted(pclient: Any) -> None:
    await sandbox_user(pclient, "instagram", PHONE)
    response = await pclient.post("/v1/messages", json=message(), headers=provider_headers("acme"))
    assert response.status == 202, await response.text()


@pytest.mark.parametrize("ending", ENDINGS, ids=repr)
async def test_key_lookup_user_with_a_control_ending_is_refused(pclient: Any, ending: str) -> None:
    await sandbox_user(pclient, "instagram", PHONE)
    response = await pclient.get(
        "/v1/keys",
        params={"user": f"mimi://instagram/u/{PHONE}{ending}"},
        headers=provider_headers("acme"),
    )
    await refused(response)


@pytest.mark.parametrize("ending", ENDINGS, ids=repr)
async def test_key_upload_user_with_a_control_ending_is_refused(pclient: Any, ending: str) -> None:
    response = await pclient.put(
        f"/v1/users/{quote('alice' + ending)}/keys",
        json={"identity_key": "x", "signing_key": "y", "one_time_keys": {}},
        headers=provider_headers("acme"),
    )
    await refused(response)


@pytest.mark.parametrize("ending", ENDINGS, ids=repr)
async def test_sandbox_native_id_with_a_control_ending_is_refused(
    client: Any, ending: str
) -> None:
    response = await client.post(
        "/sandbox/v1/users",
        json={"service": "whatsapp", "id": PHONE + ending, "name": "Sam", "consent": []},
        headers=admin_headers(),
    )
    problem = await refused(response)
    assert problem["field"] == "$.id"


@pytest.mark.parametrize("ending", ENDINGS, ids=repr)
async def test_contact_email_with_a_control_ending_is_refused(client: Any, ending: str) -> None:
    response = await client.post(
        "/v1/interop-requests", json=intake(contact_email="ops@example.org" + ending)
    )
    problem = await refused(response)
    assert problem["field"] == "$.contact_email"
