"""Groups through HTTP (DESIGN §4.10), on both storage backends: rooms, membership, consent,
visibility, Megolm room keys, stale sessions and fan-out to third-party members."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.app import create_app
from gateway.config import Config
from gateway.http.app_keys import STORE
from gateway.store import groups as groups_store
from tests.conftest import admin_headers
from tests.http.group_support import GroupUser, gid
from tests.http.providers import act_as_providers, provider_headers
from tests.http.relay_support import events_of, eventually, inbox, sandbox_user
from tests.system.test_shutdown import text_content

TEXT = {"messaging_product": "whatsapp", "type": "text", "text": {"body": "hello group"}}


@pytest.fixture
async def client(backend_config: Config, aiohttp_client: Any) -> Any:
    return await aiohttp_client(act_as_providers(create_app(backend_config)))


async def _people(client: Any) -> tuple[GroupUser, GroupUser, str, str]:
    alice = GroupUser(client, "acme", "alice")
    bob = GroupUser(client, "globex", "bob")
    for user in (alice, bob):
        await user.publish_keys(20)
    w1 = await sandbox_user(client, "whatsapp", "491701", consent=("acme", "globex"))
    w2 = await sandbox_user(client, "whatsapp", "491702", consent=("acme", "globex"))
    return alice, bob, w1, w2


async def _group(client: Any) -> tuple[GroupUser, GroupUser, str, str, str]:
    alice, bob, w1, w2 = await _people(client)
    response = await alice.create([w1, bob.uri, w2])
    assert response.status == 201, await response.text()
    return alice, bob, w1, w2, (await response.json())["group"]


async def test_create_read_and_idempotent_retry(client: Any) -> None:
    alice, bob, w1, _w2 = await _people(client)
    response = await alice.create([w1, bob.uri], id="g-1", name="Team")
    assert response.status == 201, await response.text()
    state = await response.json()
    assert state["group"].startswith("mimi://whatsapp/g/")
    assert (state["service"], state["name"], state["epoch"]) == ("whatsapp", "Team", 0)
    assert {m["uri"]: m["role"] for m in state["members"]} == {
        alice.uri: "admin", bob.uri: "member", w1: "member",
    }  # fmt: skip
    again = await alice.create([w1, bob.uri], id="g-1", name="Team")
    assert again.status == 200 and await again.json() == state
    reused = await alice.create([w1], id="g-1", name="Team")
    assert reused.status == 409
    assert (await reused.json())["field"] == "$.id"
    # Both member providers see it; the stored state is the answer.
    for user in (alice, bob):
        read = await user.state(state["group"])
        assert read.status == 200 and await read.json() == state
    stored = await groups_store.group_state(client.app[STORE], state["group"])
    assert stored is not None and stored.epoch == 0 and len(stored.members) == 3


async def test_a_group_is_invisible_to_providers_without_a_member(client: Any) -> None:
    _alice, bob, _w1, _w2, group = await _group(client)
    outsider = GroupUser(client, "initech", "eve")
    await outsider.publish_keys()
    seen = await outsider.state(group)
    missing = await outsider.state("mimi://whatsapp/g/doesnotexist")
    assert seen.status == missing.status == 404
    body, other = await seen.json(), await missing.json()
    for problem in (body, other):
        problem.pop("instance", None), problem.pop("request_id", None)
    assert body == other
    # Every other group route answers it the same 404, and changes nothing.
    path = f"/v1/groups/{gid(group)}"
    encrypted = {"protocol": "megolm.v1", "session_id": "s", "body": "AAAA", "sender_key": "k"}
    olm = {"protocol": "olm.v1", "type": 0, "body": "AAAA", "sender_key": "k"}
    attempts = [
        (f"{path}/members", {"by": outsider.uri, "add": [outsider.uri]}),
        (f"{path}/members/remove", {"by": outsider.uri, "remove": [bob.uri]}),
        (f"{path}/keys", {"from": outsider.uri, "session_id": "s",
                          "shares": [{"to": bob.uri, "encrypted": olm}]}),
        (f"{path}/messages", {"id": "x", "from": outsider.uri, "sent_at": 1,
                              "encrypted": encrypted}),
    ]  # fmt: skip
    for url, payload in attempts:
        answer = await client.post(url, json=payload, headers=outsider.headers)
        assert answer.status == 404, (url, await answer.text())
        assert (await answer.json())["type"] == "/problems/not-found"
    octets = {**outsider.headers, "Content-Type": "application/octet-stream"}
    media = await client.post("/v1/media", params={"to": group}, data=b"x", headers=octets)
    assert media.status == 404
    stored = await groups_store.group_state(client.app[STORE], group)
    assert stored is not None and stored.epoch == 0 and outsider.uri not in stored.members
    assert await events_of(client, "globex", "room_key") == []
    assert [e["epoch"] for e in await events_of(client, "globex", "group_membership")] == [0]
    # Nor can it reach a member's keys through the group.
    keys = await client.get("/v1/keys", params={"user": bob.uri}, headers=outsider.headers)
    assert keys.status == 404


async def test_consent_refusal_looks_like_nobody_and_changes_nothing(client: Any) -> None:
    alice, _bob, w1, _w2, group = await _group(client)
    only_acme = await sandbox_user(client, "whatsapp", "491703", consent=("acme",))
    nobody = "mimi://whatsapp/u/491799"
    refused = await alice.add(group, [only_acme])  # has not consented to globex, a member
    unknown = await alice.add(group, [nobody])
    assert refused.status == unknown.status == 404
    a, b = await refused.json(), await unknown.json()
    assert a["type"] == b["type"] == "/problems/unknown-recipient"
    assert a["field"] == b["field"] == "$.add[0]"
    assert a["detail"] == b["detail"]
    stored = await groups_store.group_state(client.app[STORE], group)
    assert stored is not None and stored.epoch == 0 and only_acme not in stored.members
    # At creation too: nothing is created.
    again = await alice.create([w1, nobody], id="g-nobody")
    assert again.status == 404 and (await again.json())["field"] == "$.members[1]"
    assert await groups_store.group_by_ref(client.app[STORE], "acme", "g-nobody") is None


async def test_membership_changes_raise_the_epoch_and_reach_every_provider(client: Any) -> None:
    alice, bob, _w1, _w2, group = await _group(client)
    removed = await alice.remove(group, [bob.uri])
    assert removed.status == 200, await removed.text()
    state = await removed.json()
    assert state["epoch"] == 1 and bob.uri not in {m["uri"] for m in state["members"]}
    # The removed member's provider hears of it once, then loses sight of the group.
    changes = await events_of(client, "globex", "group_membership")
    assert [(c["epoch"], c["removed"]) for c in changes] == [(0, []), (1, [bob.uri])]
    assert changes[1]["by"] == alice.uri and changes[1]["group"] == group
    assert (await bob.state(group)).status == 404
    acme = await events_of(client, "acme", "group_membership")
    assert [c["epoch"] for c in acme] == [0, 1]
    added = await alice.add(group, [bob.uri])
    assert (await added.json())["epoch"] == 2


async def test_only_admins_change_others_and_anyone_leaves(client: Any) -> None:
    alice, bob, w1, _w2, group = await _group(client)
    kick = await bob.remove(group, [w1])
    assert kick.status == 403 and (await kick.json())["field"] == "$.by"
    invite = await bob.add(group, [alice.uri])
    assert invite.status == 403
    not_mine = await client.post(
        f"/v1/groups/{gid(group)}/members/remove", json={"by": alice.uri, "remove": [w1]},
        headers=bob.headers,
    )  # fmt: skip
    assert not_mine.status == 403 and (await not_mine.json())["field"] == "$.by"
    left = await bob.remove(group, [bob.uri])
    assert left.status == 200 and (await left.json())["epoch"] == 1
    not_member = await alice.remove(group, [bob.uri])
    assert not_member.status == 422 and (await not_member.json())["field"] == "$.remove[0]"


async def test_the_offer_limits_group_size(backend_config: Config, aiohttp_client: Any) -> None:
    import msgspec

    services = dict(backend_config.services)
    services["whatsapp"] = msgspec.structs.replace(services["whatsapp"], group_max_members=3)
    client = await aiohttp_client(
        act_as_providers(create_app(msgspec.structs.replace(backend_config, services=services)))
    )
    offer = await (await client.get("/.well-known/dma-interop")).json()
    assert offer["services"]["whatsapp"]["limits"]["group_max_members"] == 3
    assert offer["services"]["messenger"]["limits"]["group_max_members"] == 250
    groups = offer["services"]["instagram"]["groups"]
    assert groups["uri_prefix"] == "mimi://instagram/g/" and groups["max_members"] == 250
    assert groups["e2ee_protocols"] == ["megolm.v1"] and "thread" in groups["platform_envelopes"]
    assert offer["services"]["whatsapp"]["functionalities"]["group_text"]["state"] == "available"
    alice, bob, w1, w2 = await _people(client)
    too_big = await alice.create([w1, w2, bob.uri])
    assert too_big.status == 422
    problem = await too_big.json()
    assert problem["field"] == "$.members" and problem["limit"] == 3
    group = (await (await alice.create([w1, w2])).json())["group"]
    over = await alice.add(group, [bob.uri])
    assert over.status == 422 and (await over.json())["field"] == "$.add"


async def test_room_keys_and_megolm_messages_reach_third_party_members(client: Any) -> None:
    alice, bob, w1, w2, group = await _group(client)
    members = [w1, bob.uri, w2]
    # Every other current member needs a share; nobody else may get one.
    partial, _ = await alice.share(group, 0, members, skip=(w2,))
    assert partial.status == 422
    problem = await partial.json()
    assert problem["field"] == "$.shares" and w2 in problem["detail"]
    outsider = GroupUser(client, "acme", "mallory")
    await outsider.publish_keys()
    stray, _ = await alice.share(group, 0, [*members, outsider.uri])
    assert stray.status == 422 and (await stray.json())["field"] == "$.shares[3].to"
    shared, session_id = await alice.share(group, 0, members)
    assert shared.status == 202, await shared.text()
    sent = await alice.send_group(group, 0, TEXT, id="m-1")
    assert sent.status == 202, await sent.text()
    again = await alice.send_group(group, 0, TEXT, id="m-1")
    assert again.status == 409  # another ciphertext under the same id
    # Bob's provider got the key (over Olm) and the Megolm message; it decrypts.
    assert await bob.read_group_events(group) == [TEXT]
    [event] = await events_of(client, "globex", "group_message")
    assert event["from"] == alice.uri and event["to"] == bob.uri
    assert event["encrypted"]["session_id"] == session_id
    # The sender's own provider gets no copy; no plaintext is stored anywhere.
    assert await events_of(client, "acme", "group_message") == []


async def test_a_session_from_before_a_membership_change_is_stale(client: Any) -> None:
    alice, bob, w1, w2, group = await _group(client)
    shared, _ = await alice.share(group, 0, [w1, bob.uri, w2])
    assert shared.status == 202
    assert (await alice.remove(group, [bob.uri])).status == 200
    stale = await alice.send_group(group, 0, TEXT)
    assert stale.status == 409
    problem = await stale.json()
    assert problem["type"] == "/problems/stale-group-session"
    assert problem["field"] == "$.encrypted.session_id"
    # Re-sharing the old session in the new epoch does not revive it.
    reshared, _ = await alice.share(group, 0, [w1, w2])
    assert reshared.status == 409
    fresh, _ = await alice.share(group, 1, [w1, w2])
    assert fresh.status == 202
    assert (await alice.send_group(group, 1, TEXT)).status == 202
    # The removed member's provider got nothing after the removal.
    assert len(await events_of(client, "globex", "room_key")) == 1
    assert await events_of(client, "globex", "group_message") == []


async def test_unknown_sessions_non_members_and_plaintext_policy(client: Any) -> None:
    alice, bob, w1, w2, group = await _group(client)
    unknown = await alice.send_group(group, 0, TEXT)
    assert unknown.status == 422
    assert (await unknown.json())["field"] == "$.encrypted.session_id"
    # Bob uses Alice's session id: refused, as a session of someone else.
    shared, session_id = await alice.share(group, 0, [w1, bob.uri, w2])
    assert shared.status == 202
    forged = await client.post(
        f"/v1/groups/{gid(group)}/messages", headers=bob.headers,
        json={"id": "f", "from": bob.uri, "sent_at": 1, "encrypted": {
            "protocol": "megolm.v1", "session_id": session_id, "body": "AAAA",
            "sender_key": bob.party.identity_key}},
    )  # fmt: skip
    assert forged.status == 422
    # WhatsApp requires E2EE: MIMI content is refused there.
    plain = await client.post(
        f"/v1/groups/{gid(group)}/messages", headers=alice.headers,
        json={"id": "p", "from": alice.uri, "sent_at": 1, "content": {"body": "hi"}},
    )  # fmt: skip
    assert plain.status == 422 and (await plain.json())["field"] == "$.encrypted"
    # `from` must be one's own user, and a current member.
    spoof = await client.post(
        f"/v1/groups/{gid(group)}/messages", headers=alice.headers,
        json={"id": "s", "from": bob.uri, "sent_at": 1, "content": {}},
    )  # fmt: skip
    assert spoof.status == 403 and (await spoof.json())["field"] == "$.from"
    await bob.remove(group, [bob.uri])
    gone = await bob.send_group(group, 1, TEXT)
    assert gone.status == 404


async def test_co_members_claim_each_others_keys_and_no_one_else(client: Any) -> None:
    alice, bob, _w1, _w2 = await _people(client)
    before = await client.get("/v1/keys", params={"user": bob.uri}, headers=alice.headers)
    assert before.status == 404
    group = (await (await alice.create([bob.uri])).json())["group"]
    during = await client.get("/v1/keys", params={"user": bob.uri}, headers=alice.headers)
    assert during.status == 200
    back = await client.get("/v1/keys", params={"user": alice.uri}, headers=bob.headers)
    assert back.status == 200
    outsider = await client.get(
        "/v1/keys", params={"user": bob.uri}, headers=provider_headers("initech")
    )
    assert outsider.status == 404
    await bob.remove(group, [bob.uri])
    after = await client.get("/v1/keys", params={"user": bob.uri}, headers=alice.headers)
    assert after.status == 404


async def test_group_media_is_for_every_members_provider(client: Any) -> None:
    alice, bob, _w1, _w2, group = await _group(client)
    octets = {**alice.headers, "Content-Type": "application/octet-stream"}
    uploaded = await client.post(
        "/v1/media", params={"to": group}, data=b"\x01" * 64, headers=octets
    )
    assert uploaded.status == 201, await uploaded.text()
    media_id = (await uploaded.json())["id"]
    fetched = await client.get(f"/v1/media/{media_id}", headers=bob.headers)
    assert fetched.status == 200 and await fetched.read() == b"\x01" * 64
    outsider = await client.get(f"/v1/media/{media_id}", headers=provider_headers("initech"))
    assert outsider.status == 404
    # The hub's media kinds apply; a provider without a member cannot upload to the group.
    bad_kind = await client.post(
        "/v1/media", params={"to": group, "kind": "hologram"}, data=b"x", headers=octets
    )
    assert bad_kind.status == 422 and (await bad_kind.json())["field"] == "kind"
    stranger = await client.post(
        "/v1/media", params={"to": group}, data=b"x",
        headers={**provider_headers("initech"), "Content-Type": "application/octet-stream"},
    )  # fmt: skip
    assert stranger.status == 404
    await alice.remove(group, [bob.uri])
    after = await client.get(f"/v1/media/{media_id}", headers=bob.headers)
    assert after.status == 404


async def _inbox_texts(client: Any, uri: str) -> list[Any]:
    """(kind, group id, text) of each group item in a sandbox WhatsApp user's inbox."""
    out = []
    for item in await inbox(client, uri):
        for entry in item["payload"]["entry"]:
            for change in entry["changes"]:
                value = change["value"]
                if change["field"] == "group_participants_update":
                    out.append(("membership", value["groups"][0]["group_id"], None))
                for msg in value.get("messages", []):
                    if "group_id" in msg:
                        out.append(("message", msg["group_id"], msg["text"]["body"]))
    return out


async def test_platform_members_read_the_group_and_write_to_it(client: Any) -> None:
    alice, bob, w1, w2, group = await _group(client)
    assert (await alice.share(group, 0, [w1, bob.uri, w2]))[0].status == 202
    assert (await alice.send_group(group, 0, TEXT)).status == 202
    native_id = gid(group)

    async def w1_read() -> list[Any] | None:
        got = await _inbox_texts(client, w1)
        return got if ("message", native_id, "hello group") in got else None

    # The creation reached w1 as WhatsApp's group_participants_update, then the message.
    assert await eventually(w1_read) == [
        ("membership", native_id, None), ("message", native_id, "hello group"),
    ]  # fmt: skip
    # w2 writes to the group: it shares a session (Olm to each member) and sends Megolm.
    sent = await client.post(
        "/sandbox/v1/send", headers=admin_headers(),
        json={"from": w2, "to": group, "content": text_content("from w2")},
    )  # fmt: skip
    assert sent.status == 202, await sent.text()

    async def bob_read() -> list[Any] | None:
        texts = await bob.read_group_events(group)
        return texts if len(texts) == 2 else None

    read = await eventually(bob_read)
    assert read[0] == TEXT and read[1]["text"]["body"] == "from w2"
    assert await eventually(lambda: _has(client, w1, "from w2"))
    # After a removal, w2's next message is under a new session the removed bob never gets.
    assert (await alice.remove(group, [bob.uri])).status == 200
    again = await client.post(
        "/sandbox/v1/send", headers=admin_headers(),
        json={"from": w2, "to": group, "content": text_content("after bob")},
    )  # fmt: skip
    assert again.status == 202, await again.text()
    assert await eventually(lambda: _has(client, w1, "after bob"))
    keys_to_bob = [e for e in await events_of(client, "globex", "room_key") if e["from"] == w2]
    assert len(keys_to_bob) == 1  # only the session of epoch 0
    assert len(await bob.read_group_events(group)) == 2


async def _has(client: Any, uri: str, text: str) -> bool:
    return any(t == text for _, _, t in await _inbox_texts(client, uri))


async def test_a_platform_member_reaches_only_providers_it_consents_to(client: Any) -> None:
    alice, _bob, w1, _w2, group = await _group(client)
    # w1 revokes its consent to globex: what it sends no longer reaches bob's provider.
    changed = await client.put(
        "/sandbox/v1/consent", headers=admin_headers(), json={"user": w1, "consent": ["acme"]}
    )
    assert changed.status in (200, 204), await changed.text()
    sent = await client.post(
        "/sandbox/v1/send", headers=admin_headers(),
        json={"from": w1, "to": group, "content": text_content("not for globex")},
    )  # fmt: skip
    assert sent.status == 202, await sent.text()

    async def alice_read() -> list[Any] | None:
        texts = await alice.read_group_events(group)
        return texts or None

    assert [t["text"]["body"] for t in await eventually(alice_read)] == ["not for globex"]
    assert [e for e in await events_of(client, "globex", "group_message")] == []
    assert [e for e in await events_of(client, "globex", "room_key") if e["from"] == w1] == []


async def test_a_failing_member_holds_up_no_one_and_its_sender_hears_of_it(client: Any) -> None:
    alice, bob, w1, w2, group = await _group(client)
    assert (await alice.share(group, 0, [w1, bob.uri, w2]))[0].status == 202
    # w1 withdraws its consent to acme after joining: alice's messages can no longer reach it.
    changed = await client.put(
        "/sandbox/v1/consent", headers=admin_headers(), json={"user": w1, "consent": ["globex"]}
    )
    assert changed.status in (200, 204), await changed.text()
    for n in range(3):
        sent = await alice.send_group(group, 0, {**TEXT, "text": {"body": f"m{n}"}}, id=f"m{n}")
        assert sent.status == 202
    # w2 and bob get all three, in order; w1 none.
    assert await eventually(lambda: _texts_are(client, w2, ["m0", "m1", "m2"]))
    assert [m["text"]["body"] for m in await bob.read_group_events(group)] == ["m0", "m1", "m2"]

    async def failures() -> list[Any] | None:
        found = await events_of(client, "acme", "delivery_failed")
        return found if len(found) >= 3 else None

    failed = await eventually(failures)
    assert {(f["message_id"], f["to"], f["reason"]) for f in failed} == {
        (f"m{n}", w1, "recipient_unavailable") for n in range(3)
    }
    assert [t for _, _, t in await _inbox_texts(client, w1) if t] == []


async def _texts_are(client: Any, uri: str, texts: list[str]) -> bool:
    return [t for _, _, t in await _inbox_texts(client, uri) if t] == texts
