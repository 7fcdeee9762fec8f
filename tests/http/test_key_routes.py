"""The key directory through HTTP: publishing, signature checks, atomic claims, isolation."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

import msgspec

from gateway.crypto import OlmParty, verify_key_signature
from tests.conftest import assert_problem
from tests.http.providers import provider_headers


def bundle_json(party: OlmParty, n: int, *, fallback: bool = False) -> dict[str, Any]:
    return msgspec.to_builtins(party.key_bundle(n, fallback=fallback))


async def publish(client: Any, client_id: str, user: str, body: dict[str, Any]) -> Any:
    return await client.put(
        f"/v1/users/{quote(user, safe='')}/keys", json=body, headers=provider_headers(client_id)
    )


async def claim(client: Any, client_id: str, uri: str) -> Any:
    return await client.get("/v1/keys", params={"user": uri}, headers=provider_headers(client_id))


async def problem(response: Any, status: int, type_: str) -> dict[str, Any]:
    body = await response.json()
    assert_problem(response.status, response.content_type, body, status, type_)
    return body


async def test_publish_then_claim_starts_a_working_session(backend_pclient: Any) -> None:
    client = backend_pclient
    bob = OlmParty()
    response = await publish(client, "acme", "bob", bundle_json(bob, 5, fallback=True))
    assert response.status == 200
    assert await response.json() == {
        "user": "mimi://acme/u/bob",
        "one_time_key_count": 5,
        "fallback_key": True,
        "identity_changed": False,
    }
    response = await claim(client, "acme", "mimi://acme/u/bob")
    assert response.status == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = await response.json()
    assert body["user"] == "mimi://acme/u/bob"
    assert body["identity_key"] == bob.identity_key
    assert body["signing_key"] == bob.signing_key
    assert body["fallback_key"] is None
    otk = body["one_time_key"]
    assert verify_key_signature(body["signing_key"], otk["key"], otk["signature"])
    alice = OlmParty()
    message = alice.encrypt(body["identity_key"], b"hello", one_time_key=otk["key"])
    assert bob.decrypt(message) == b"hello"


async def test_replenishment_adds_keys(backend_pclient: Any) -> None:
    client = backend_pclient
    bob = OlmParty()
    await publish(client, "acme", "bob", bundle_json(bob, 3))
    response = await publish(client, "acme", "bob", bundle_json(bob, 4))
    assert (await response.json())["one_time_key_count"] == 7
    assert (await response.json())["identity_changed"] is False


async def test_a_bad_one_time_key_signature_names_the_key_and_stores_nothing(
    backend_pclient: Any,
) -> None:
    client = backend_pclient
    bob = OlmParty()
    body = bundle_json(bob, 3, fallback=True)
    key_id = sorted(body["one_time_keys"])[1]
    body["one_time_keys"][key_id]["signature"] = OlmParty().sign(
        body["one_time_keys"][key_id]["key"]
    )
    response = await publish(client, "acme", "bob", body)
    problem_body = await problem(response, 422, "/problems/validation")
    assert problem_body["field"] == f"$.one_time_keys.{key_id}.signature"
    # Nothing of the upload is stored: the user does not exist.
    response = await claim(client, "acme", "mimi://acme/u/bob")
    await problem(response, 404, "/problems/unknown-recipient")


async def test_a_failed_replenishment_leaves_the_stock_unchanged(backend_pclient: Any) -> None:
    client = backend_pclient
    bob = OlmParty()
    await publish(client, "acme", "bob", bundle_json(bob, 2))
    body = bundle_json(bob, 3, fallback=True)
    assert body["fallback_key"] is not None
    body["fallback_key"]["signature"] = body["fallback_key"]["signature"][::-1]
    response = await publish(client, "acme", "bob", body)
    assert (await problem(response, 422, "/problems/validation"))["field"] == (
        "$.fallback_key.signature"
    )
    claims = [await (await claim(client, "acme", "mimi://acme/u/bob")).json() for _ in range(3)]
    assert [c["one_time_key"] is not None for c in claims] == [True, True, False]
    assert claims[2]["fallback_key"] is None


async def test_malformed_keys_are_named(backend_pclient: Any) -> None:
    client = backend_pclient
    bob = OlmParty()
    cases = [
        ("identity_key", "not-a-key", "$.identity_key"),
        ("signing_key", "AAAA", "$.signing_key"),
    ]
    for name, value, field in cases:
        body = bundle_json(bob, 1)
        body[name] = value
        response = await publish(client, "acme", "bob", body)
        assert (await problem(response, 422, "/problems/validation"))["field"] == field
    body = bundle_json(bob, 1)
    (key_id,) = body["one_time_keys"]
    body["one_time_keys"][key_id]["key"] = "x"
    response = await publish(client, "acme", "bob", body)
    assert (await problem(response, 422, "/problems/validation"))["field"] == (
        f"$.one_time_keys.{key_id}.key"
    )
    body = bundle_json(bob, 1)
    body["one_time_keys"] = {"bad id!": next(iter(body["one_time_keys"].values()))}
    response = await publish(client, "acme", "bob", body)
    assert (await problem(response, 422, "/problems/validation"))["field"] == "$.one_time_keys"
    body = bundle_json(bob, 0)
    body["extra"] = 1
    response = await publish(client, "acme", "bob", body)
    assert (await problem(response, 422, "/problems/validation"))["field"] == "$.extra"


async def test_the_per_user_stock_is_capped(backend_pclient: Any) -> None:
    client = backend_pclient
    bob = OlmParty()
    for _ in range(4):
        assert (await publish(client, "acme", "bob", bundle_json(bob, 50))).status == 200
    response = await publish(client, "acme", "bob", bundle_json(bob, 1))
    assert (await problem(response, 422, "/problems/validation"))["field"] == "$.one_time_keys"


async def test_concurrent_claims_never_share_a_key(backend_pclient: Any) -> None:
    client = backend_pclient
    bob = OlmParty()
    await publish(client, "acme", "bob", bundle_json(bob, 40, fallback=True))
    await publish(client, "acme", "bob", bundle_json(bob, 20))
    responses = await asyncio.gather(
        *(claim(client, "acme", "mimi://acme/u/bob") for i in range(75))
    )
    bodies = [await r.json() for r in responses]
    assert all(r.status == 200 for r in responses)
    ids = [b["one_time_key"]["key_id"] for b in bodies if b["one_time_key"] is not None]
    assert len(ids) == 60
    assert len(set(ids)) == 60
    fallbacks = [b["fallback_key"] for b in bodies if b["one_time_key"] is None]
    assert len(fallbacks) == 15
    assert all(f is not None and f["key_id"] for f in fallbacks)


async def test_unknown_users_and_platform_users_look_the_same(backend_pclient: Any) -> None:
    client, bodies = backend_pclient, []
    for uri in ("mimi://acme/u/nobody", "mimi://whatsapp/u/4915112345678"):
        body = await problem(await claim(client, "other", uri), 404, "/problems/unknown-recipient")
        bodies.append({k: v for k, v in body.items() if k not in ("request_id", "instance")})
    assert bodies[0] == bodies[1]
    assert "nobody" not in str(bodies[0])


async def test_claim_parameters_are_checked(backend_pclient: Any) -> None:
    client = backend_pclient
    response = await client.get("/v1/keys", headers=provider_headers("other"))
    assert (await problem(response, 422, "/problems/validation"))["field"] == "user"
    response = await claim(client, "other", "https://example.com/bob")
    assert (await problem(response, 422, "/problems/validation"))["field"] == "user"


async def test_providers_publish_only_their_own_users(backend_pclient: Any) -> None:
    client = backend_pclient
    alice = OlmParty()
    await publish(client, "acme", "alice", bundle_json(alice, 1))
    response = await publish(client, "evil", "mimi://acme/u/alice", bundle_json(OlmParty(), 1))
    assert (await problem(response, 403, "/problems/forbidden"))["field"] == "user"
    response = await publish(client, "acme", "mimi://acme/u/alice", bundle_json(alice, 1))
    assert (await response.json())["one_time_key_count"] == 2
    # The same local id under another provider is another user.
    response = await publish(client, "evil", "alice", bundle_json(OlmParty(), 1))
    assert (await response.json())["user"] == "mimi://evil/u/alice"
    body = await (await claim(client, "acme", "mimi://acme/u/alice")).json()
    assert body["identity_key"] == alice.identity_key
    response = await publish(client, "acme", "bad user!", bundle_json(alice, 1))
    assert (await problem(response, 422, "/problems/validation"))["field"] == "user"


async def test_authentication_and_scope_are_required(backend_pclient: Any) -> None:
    client = backend_pclient
    body = bundle_json(OlmParty(), 1)
    response = await client.put("/v1/users/bob/keys", json=body)
    await problem(response, 401, "/problems/unauthorized")
    response = await client.get("/v1/keys", params={"user": "mimi://acme/u/bob"})
    await problem(response, 401, "/problems/unauthorized")
    headers = provider_headers("acme", scopes=("messages",))
    response = await client.put("/v1/users/bob/keys", json=body, headers=headers)
    await problem(response, 403, "/problems/insufficient-scope")


async def test_publish_claim_and_identity_change_are_audited_without_raw_ids(
    backend_pclient: Any,
) -> None:
    from gateway.http.app_keys import STORE

    client = backend_pclient
    await publish(client, "acme", "bob", bundle_json(OlmParty(), 1))
    await claim(client, "acme", "mimi://acme/u/bob")
    response = await publish(client, "acme", "bob", bundle_json(OlmParty(), 1))
    assert (await response.json())["identity_changed"] is True
    rows = await client.app[STORE].fetch(
        "SELECT action, status, client_id, subjects, request_id FROM audit_records "
        "WHERE action LIKE 'keys.%' ORDER BY seq"
    )
    actions = [(r["action"], r["status"], r["client_id"]) for r in rows]
    assert actions == [
        ("keys.publish", 200, "acme"),
        ("keys.claim", 200, "acme"),
        ("keys.identity_changed", 200, "acme"),
        ("keys.publish", 200, "acme"),
    ]
    assert rows[2]["request_id"] == rows[3]["request_id"]
    assert all("bob" not in r["subjects"] and r["subjects"] != "[]" for r in rows)


async def test_platform_users_need_consent_and_look_missing_without_it(
    backend_pclient: Any,
) -> None:
    from tests.conftest import admin_headers

    client = backend_pclient
    body = {"service": "whatsapp", "id": "4915100000001", "name": "W", "consent": ["acme"]}
    response = await client.post("/sandbox/v1/users", json=body, headers=admin_headers())
    assert response.status == 201
    wa = (await response.json())["uri"]
    claimed = await (await claim(client, "acme", wa)).json()
    assert claimed["user"] == wa and claimed["one_time_key"] is not None
    assert verify_key_signature(
        claimed["signing_key"],
        claimed["one_time_key"]["key"],
        claimed["one_time_key"]["signature"],
    )
    bodies = []
    for uri in (wa, "mimi://whatsapp/u/4915100000002"):
        body = await problem(await claim(client, "other", uri), 404, "/problems/unknown-recipient")
        bodies.append({k: v for k, v in body.items() if k not in ("request_id", "instance")})
    assert bodies[0] == bodies[1]


def comparable(body: dict[str, Any]) -> dict[str, Any]:
    """A problem body without what differs per request."""
    return {k: v for k, v in body.items() if k not in ("request_id", "instance")}


async def sandbox_user(client: Any, service: str, native: str, consent: Any = "all") -> str:
    from tests.conftest import admin_headers

    body = {"service": service, "id": native, "name": "U", "consent": consent}
    response = await client.post("/sandbox/v1/users", json=body, headers=admin_headers())
    assert response.status == 201
    return str((await response.json())["uri"])


async def test_another_providers_users_look_missing_and_keep_their_keys(
    backend_pclient: Any,
) -> None:
    client = backend_pclient
    await publish(client, "acme", "bob", bundle_json(OlmParty(), 2, fallback=True))
    bodies = []
    for uri in ("mimi://acme/u/bob", "mimi://acme/u/nobody"):
        response = await claim(client, "beta", uri)
        bodies.append(comparable(await problem(response, 404, "/problems/unknown-recipient")))
    assert bodies[0] == bodies[1]
    # Nothing was drained: the owner still finds both one-time keys.
    claims = [await (await claim(client, "acme", "mimi://acme/u/bob")).json() for _ in range(3)]
    assert [c["one_time_key"] is not None for c in claims] == [True, True, False]


async def test_identity_changes_reach_only_providers_that_may_reach_the_user(
    backend_pclient: Any,
) -> None:
    from gateway.http.app_keys import STORE

    client = backend_pclient
    await publish(client, "acme", "bob", bundle_json(OlmParty(), 1))
    await publish(client, "beta", "carol", bundle_json(OlmParty(), 1))  # beta exists

    async def stale_contact(tx: Any) -> None:  # recorded before the reach policy
        await tx.execute(
            "INSERT INTO e2ee_contacts (user_uri, client_id, last_seen_at) VALUES ($1, $2, 0)",
            "mimi://acme/u/bob",
            "beta",
        )

    await client.app[STORE].write("test_contact", stale_contact)
    response = await publish(client, "acme", "bob", bundle_json(OlmParty(), 1))
    assert (await response.json())["identity_changed"] is True
    types = await client.app[STORE].fetch(
        "SELECT client_id, type FROM provider_events WHERE type = 'identity_changed'"
    )
    assert types == []


async def test_keys_of_an_unapproved_service_look_missing(backend_pclient: Any) -> None:
    from tests.onboarding_helpers import register_provider

    client = backend_pclient
    await register_provider(client.app, "narrow", services=("whatsapp", "messenger"))
    ig = await sandbox_user(client, "instagram", "1789")
    wa = await sandbox_user(client, "whatsapp", "4915100000009")
    assert (await claim(client, "narrow", wa)).status == 200
    bodies = []
    for uri in (ig, "mimi://instagram/u/1790"):
        response = await claim(client, "narrow", uri)
        bodies.append(comparable(await problem(response, 404, "/problems/unknown-recipient")))
    assert bodies[0] == bodies[1]


async def test_the_per_user_cap_is_checked_before_any_signature(backend_pclient: Any) -> None:
    client = backend_pclient
    bob = OlmParty()
    for _ in range(4):
        assert (await publish(client, "acme", "bob", bundle_json(bob, 50))).status == 200
    body = bundle_json(bob, 1)
    for key in body["one_time_keys"].values():
        key["signature"] = key["signature"][::-1]  # would be refused, but only after the cap
    response = await publish(client, "acme", "bob", body)
    problem_body = await problem(response, 422, "/problems/validation")
    assert problem_body["field"] == "$.one_time_keys"
    assert "200" in problem_body["detail"]
