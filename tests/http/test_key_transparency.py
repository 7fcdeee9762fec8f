"""Key transparency through HTTP (DESIGN §4.12): proofs on claims, heads, consistency, history."""

from __future__ import annotations

from typing import Any

import msgspec

from gateway.crypto import OlmParty
from gateway.crypto.merkle import verify_consistency
from gateway.crypto.transparency import (
    Head,
    head_problem,
    inclusion_problem,
    keyring,
    parse_leaf,
    public_key_from_b64,
    unb64,
)
from gateway.http.app_keys import STORE
from tests.conftest import admin_headers
from tests.http.providers import provider_headers
from tests.http.test_key_routes import bundle_json, claim, problem, publish


async def log_keys(client: Any) -> dict[str, Any]:
    offer = await (await client.get("/.well-known/dma-interop")).json()
    kt = offer["key_transparency"]
    return keyring([public_key_from_b64(kt["public_key"])])


async def test_a_claim_proves_its_keys_are_in_the_signed_log(backend_pclient: Any) -> None:
    client = backend_pclient
    bob = OlmParty()
    await publish(client, "acme", "bob", bundle_json(bob, 3))
    body = await (await claim(client, "acme", "mimi://acme/u/bob")).json()
    t = body["transparency"]
    assert set(t) == {"leaf_index", "leaf", "salt", "inclusion_proof", "head"}
    assert len(unb64(t["salt"])) == 16
    leaf = parse_leaf(t["leaf"])
    assert (leaf.identity_key, leaf.signing_key, leaf.version) == (
        bob.identity_key, bob.signing_key, 1,
    )  # fmt: skip
    assert "bob" not in t["leaf"]  # the leaf names a salted hash, not the user
    problem_, _, _ = inclusion_problem(
        "mimi://acme/u/bob", bob.identity_key, bob.signing_key, t, await log_keys(client)
    )
    assert problem_ is None
    # Another user's URI does not match the leaf's commitment.
    wrong, _, _ = inclusion_problem(
        "mimi://acme/u/eve", bob.identity_key, bob.signing_key, t, await log_keys(client)
    )
    assert wrong == "the log leaf commits to another user"


async def test_key_changes_grow_the_log_and_heads_stay_consistent(backend_pclient: Any) -> None:
    client = backend_pclient
    keys = await log_keys(client)
    first = await (await client.get("/v1/key-transparency/head")).json()
    assert first["tree_size"] == 0 and head_problem(msgspec.convert(first, Head), keys) is None
    await publish(client, "acme", "bob", bundle_json(OlmParty(), 1))
    await publish(client, "acme", "bob", bundle_json(OlmParty(), 1))  # a new identity: v2
    await publish(client, "acme", "carol", bundle_json(OlmParty(), 1))
    same = OlmParty()
    await publish(client, "acme", "dave", bundle_json(same, 1))
    await publish(client, "acme", "dave", bundle_json(same, 1))  # same keys: no leaf
    claimed = await (await claim(client, "acme", "mimi://acme/u/dave")).json()
    head = claimed["transparency"]["head"]
    assert head["tree_size"] == 4
    for old in (1, 2, 3, 4):
        answer = await client.get(
            "/v1/key-transparency/consistency", params={"from": str(old), "to": "4"}
        )
        assert answer.status == 200
        proof = [unb64(p) for p in (await answer.json())["proof"]]
        rows = await client.app[STORE].fetch(
            "SELECT leaf_hash FROM kt_leaves WHERE leaf_index < $1 ORDER BY leaf_index", old
        )
        from gateway.crypto.merkle import root_of

        old_root = root_of([bytes(r["leaf_hash"]) for r in rows])
        assert verify_consistency(old, 4, old_root, unb64(head["root_hash"]), proof)
    latest = await (await client.get("/v1/key-transparency/head")).json()
    assert latest == head


async def test_consistency_refuses_bad_sizes(backend_pclient: Any) -> None:
    client = backend_pclient
    for params, field in (
        ({"from": "0", "to": "9"}, "to"),
        ({"from": "x", "to": "0"}, "from"),
        ({"to": "0"}, "from"),
        ({"from": "-1", "to": "0"}, "from"),
    ):
        response = await client.get("/v1/key-transparency/consistency", params=params)
        body = await problem(response, 422, "/problems/validation")
        assert field in str(body), body


async def test_history_is_for_the_users_own_provider(backend_pclient: Any) -> None:
    client = backend_pclient
    first, second = OlmParty(), OlmParty()
    await publish(client, "acme", "bob", bundle_json(first, 1))
    await publish(client, "acme", "bob", bundle_json(second, 1))
    response = await client.get(
        "/v1/key-transparency/history",
        params={"user": "mimi://acme/u/bob"},
        headers=provider_headers("acme"),
    )
    assert response.status == 200
    body = await response.json()
    keys = await log_keys(client)
    assert [parse_leaf(v["leaf"]).identity_key for v in body["versions"]] == [
        first.identity_key, second.identity_key,
    ]  # fmt: skip
    for version, party in zip(body["versions"], (first, second), strict=True):
        entry = {**version, "salt": body["salt"], "head": body["head"]}
        found, _, _ = inclusion_problem(
            "mimi://acme/u/bob", party.identity_key, party.signing_key, entry, keys
        )
        assert found is None
    other = await client.get(
        "/v1/key-transparency/history",
        params={"user": "mimi://acme/u/bob"},
        headers=provider_headers("beta"),
    )
    await problem(other, 403, "/problems/forbidden")
    missing = await client.get(
        "/v1/key-transparency/history",
        params={"user": "mimi://acme/u/nobody"},
        headers=provider_headers("acme"),
    )
    await problem(missing, 404, "/problems/unknown-recipient")
    bad = await client.get(
        "/v1/key-transparency/history", params={"user": "bob"}, headers=provider_headers("acme")
    )
    await problem(bad, 422, "/problems/validation")


async def test_a_platform_users_key_is_logged_once_when_first_seen(backend_pclient: Any) -> None:
    client = backend_pclient
    body = {"service": "whatsapp", "id": "4915100000001", "name": "W", "consent": ["acme"]}
    response = await client.post("/sandbox/v1/users", json=body, headers=admin_headers())
    wa = (await response.json())["uri"]
    claims = [await (await claim(client, "acme", wa)).json() for _ in range(2)]
    assert [c["transparency"]["leaf_index"] for c in claims] == [0, 0]
    assert await client.app[STORE].fetchval("SELECT size FROM kt_tree") == 1
    keys = await log_keys(client)
    found, _, _ = inclusion_problem(
        wa, claims[1]["identity_key"], claims[1]["signing_key"], claims[1]["transparency"], keys
    )
    assert found is None


async def test_head_signing_is_audited(backend_pclient: Any) -> None:
    client = backend_pclient
    await client.get("/v1/key-transparency/head")
    rows = await client.app[STORE].fetch(
        "SELECT action, attrs FROM audit_records WHERE action LIKE 'kt.%' ORDER BY seq"
    )
    assert [r["action"] for r in rows][:2] == ["kt.head_signed", "kt.head"]
    assert '"tree_size":0' in rows[0]["attrs"].replace(" ", "")
