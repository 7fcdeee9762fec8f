"""deploy/METRICS.md and the code cannot drift: every listed name is on /metrics and vice versa."""

from __future__ import annotations

import re
import time
from typing import Any

import msgspec

from gateway.crypto import OlmParty
from gateway.http.app_keys import GAUGES
from tests.conftest import admin_headers
from tests.deploy.catalogue import catalogue_names, catalogued, exposed_names
from tests.http.relay_support import eventually
from tests.onboarding_helpers import new_key, onboard, post_token
from tests.system.test_shutdown import text_content


async def test_every_catalogue_metric_is_exposed(client: Any) -> None:
    response = await client.get("/metrics")
    assert response.status == 200
    exposed = exposed_names(await response.text())
    missing = [name for name in catalogue_names() if name not in exposed]
    assert not missing, f"listed in deploy/METRICS.md but not on /metrics: {missing}"


async def test_every_gateway_metric_is_catalogued(client: Any) -> None:
    exposed = exposed_names(await (await client.get("/metrics")).text())
    ours = {name for name in exposed if name.startswith("gateway_")}
    undocumented = sorted(ours - set(catalogue_names()))
    assert not undocumented, f"on /metrics but not in deploy/METRICS.md: {undocumented}"


def test_catalogue_lists_each_name_once() -> None:
    names = catalogue_names()
    assert len(names) == len(set(names))


# Catalogued series that a short flow cannot produce: they need a delivery given up on after
# its retries, or a provider webhook answering.
NOT_IN_A_SHORT_FLOW = {"gateway_messages_failed_total", "gateway_events_webhook_pushes_total"}


def sampled_names(text: str) -> set[str]:
    """Names of the samples (not just the declarations) in a Prometheus text exposition."""
    lines = (line for line in text.splitlines() if line and not line.startswith("#"))
    return {re.split(r"[{ ]", line, maxsplit=1)[0] for line in lines}


async def test_a_message_flow_through_http_gives_every_catalogue_metric_a_sample(
    client: Any,
) -> None:
    provider = await onboard(client)
    refused = await post_token(client, "not-a-jwt")
    assert refused.status in (400, 401)
    peer = "mimi://instagram/u/17841400000000001"
    response = await client.post(
        "/sandbox/v1/users",
        headers=admin_headers(),
        json={"service": "instagram", "id": "17841400000000001", "name": "Sam", "consent": "all"},
    )
    assert response.status == 201
    alice = f"mimi://{provider.client_id}/u/alice"
    response = await client.put(
        "/v1/users/alice/keys",
        headers=provider.headers(),
        json=msgspec.to_builtins(OlmParty().key_bundle(3, fallback=True)),
    )
    assert response.status == 200, await response.text()
    message = {"id": "m1", "from": alice, "to": peer, "sent_at": int(time.time() * 1000)}
    response = await client.post(
        "/v1/messages", json={**message, "content": text_content("hi")}, headers=provider.headers()
    )
    assert response.status == 202, await response.text()

    async def delivered() -> bool:
        text = await (await client.get("/metrics")).text()
        return "gateway_messages_delivered_total{" in text

    await eventually(delivered)
    response = await client.post(  # the platform user answers: an event for the provider
        "/sandbox/v1/send",
        headers=admin_headers(),
        json={"from": peer, "to": alice, "content": text_content("hello")},
    )
    assert response.status == 202, await response.text()
    # A group on Instagram (plaintext allowed there): a creation and a fanned-out message.
    response = await client.post(
        "/v1/groups",
        headers=provider.headers(),
        json={
            "id": "g1",
            "service": "instagram",
            "creator": alice,
            "name": "G",
            "members": [peer],
        },
    )
    assert response.status == 201, await response.text()
    group_id = (await response.json())["group"].rpartition("/")[2]
    response = await client.post(
        f"/v1/groups/{group_id}/messages",
        headers=provider.headers(),
        json={"id": "g1m1", "from": alice, "sent_at": 1, "content": text_content("hi all")},
    )
    assert response.status == 202, await response.text()
    for _ in range(10):  # past the intake bucket of this client address
        if (await submit_request_raw(client)).status == 429:
            break
    else:
        raise AssertionError("the intake was never rate limited")
    await client.app[GAUGES].refresh()

    sampled = sampled_names(await (await client.get("/metrics")).text())
    missing = [
        name
        for name in catalogue_names()
        if name not in NOT_IN_A_SHORT_FLOW and not any(catalogued(s, {name}) for s in sampled)
    ]
    assert not missing, f"no sample after a message flow: {missing}"


async def submit_request_raw(client: Any) -> Any:
    _, jwk = new_key()
    body = {
        "organisation": "Rate Limited Ltd",
        "contact_email": "ops@example.org",
        "services": ["whatsapp"],
        "functionalities": ["text"],
        "jwks": {"keys": [jwk]},
    }
    return await client.post("/v1/interop-requests", json=body)
