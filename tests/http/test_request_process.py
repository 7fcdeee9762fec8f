"""The request process in phases: plan, comments, disputes and review, extensions, live."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from gateway.config import Config
from gateway.errors import Conflict
from gateway.http.app_keys import EGRESS, INTEROP_REQUESTS, STORE
from gateway.service.interop_requests import InteropRequests
from gateway.service.request_process import CommentIn, DisputeIn, RequestProcess
from gateway.service.working_days import WorkingDays
from tests.conftest import admin_headers, assert_problem
from tests.onboarding_helpers import decide, new_key, submit_request

_DAY_MS = 86_400_000


@pytest.fixture
def config(backend_config: Config) -> Config:
    return backend_config


def _day(offset_days: int) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(days=offset_days)).strftime("%Y-%m-%d")


async def _admin(client: Any, request_id: str, step: str, body: dict[str, Any] | None) -> Any:
    response = await client.post(
        f"/admin/v1/interop-requests/{request_id}/{step}", json=body, headers=admin_headers()
    )
    return response


async def _as_requester(client: Any, created: dict[str, Any], step: str, body: Any) -> Any:
    return await client.post(
        f"/v1/interop-requests/{created['id']}/{step}",
        json=body,
        headers={"Authorization": f"Bearer {created['status_token']}"},
    )


async def _expect(response: Any, status: int, type_: str | None = None) -> Any:
    body = await response.json(content_type=None)
    if type_ is None:
        assert response.status == status, body
    else:
        assert_problem(response.status, response.content_type, body, status, type_)
    return body


async def test_a_request_goes_through_every_phase(client: Any) -> None:
    _, jwk = new_key("ed25519", kid="k1")
    created = await submit_request(client, [jwk], organisation="Phase Chat")
    received = created["received_at"]
    assert created["eligibility_due_at"] == WorkingDays().add(received, 20)
    await decide(client, created["id"], "approve")
    rid = created["id"]

    # A plan must fit in the Art. 7(5) deadline: first extend it (Art. 7(6)).
    late = {"next_update": _day(7), "live": _day(120)}
    await _expect(await _admin(client, rid, "plan", late), 422, "/problems/validation")
    await _expect(
        await _admin(client, rid, "extend", {"until": _day(130), "reason": "Needs a new API"}),
        200,
    )
    view = await _expect(await _admin(client, rid, "plan", {**late, "note": "v1 first"}), 200)
    assert view["status"] == "planned"
    assert view["plan"]["comment_due_at"] == WorkingDays().add(view["plan"]["planned_at"], 10)
    assert view["extended_to"] > created["deadline_at"]

    # The requester comments, then disputes the plan; the review revises it.
    status = await _expect(
        await _as_requester(client, created, "comments", {"text": "Could it be sooner?"}), 200
    )
    assert status["transitions"][-1]["event"] == "comment"
    assert status["webhook_secret"] is None
    status = await _expect(
        await _as_requester(client, created, "dispute", {"reason": "Sooner, please"}), 200
    )
    assert status["status"] == "disputed"
    review = next(d for d in status["deadlines"] if d["name"] == "review")
    assert review["due_at"] > status["transitions"][-1]["at"]
    view = await _expect(
        await _admin(client, rid, "review", {"outcome": "revised", "reason": "Agreed"}), 200
    )
    assert view["status"] == "approved"
    await _expect(
        await _admin(client, rid, "plan", {"next_update": _day(3), "live": _day(30)}), 200
    )
    view = await _expect(await _admin(client, rid, "live", {"note": "all done"}), 200)
    assert view["status"] == "live"
    met = {d["name"]: d["met_at"] for d in view["deadlines"]}
    assert met["art_7_5"] == view["live_at"] and met["go_live"] == view["live_at"]
    assert met["eligibility"] is not None

    # The requester's log has every step with its text; the public one none of the texts.
    status = await (
        await client.get(
            f"/v1/interop-requests/{rid}",
            headers={"Authorization": f"Bearer {created['status_token']}"},
        )
    ).json()
    steps = [(t["to_status"], t["event"]) for t in status["transitions"]]
    assert steps == [
        ("received", None),
        ("approved", None),
        ("approved", "extension"),
        ("planned", None),
        ("planned", "comment"),
        ("disputed", None),
        ("approved", "review_revised"),
        ("planned", None),
        ("live", None),
    ]
    assert "Needs a new API" in status["transitions"][2]["reason"]
    public = await (
        await client.get(f"/requests/{rid}", headers={"Accept": "application/json"})
    ).json()
    assert [e["event"] for e in public["log"]][-4:] == [
        "disputed",
        "review revised",
        "planned",
        "live",
    ]
    assert all(e["text"] is None for e in public["log"])
    assert [e["actor"] for e in public["log"]][4:6] == ["requester", "requester"]
    page = await (await client.get(f"/requests/{rid}")).text()
    assert "Could it be sooner" not in page and "Phase Chat" in page
    assert "extended (Art. 7(6))" in page

    # Every step is in the audit log under its own action, without its texts.
    export = await (await client.get("/admin/v1/audit", headers=admin_headers())).text()
    records = [json.loads(line) for line in export.splitlines()]
    actions = [(r["action"], r["status"]) for r in records if r.get("kind") == "record"]
    for action in ("plan", "extend", "comment", "dispute", "review", "live"):
        assert (f"interop_request.{action}", 200) in actions
    assert "Could it be sooner" not in export and "Needs a new API" not in export


async def test_a_rejection_is_disputed_and_decided_again(client: Any) -> None:
    _, jwk = new_key("ed25519", kid="k1")
    created = await submit_request(client, [jwk], organisation="Secret Co")
    rid = created["id"]
    await decide(client, rid, "reject", reason="No JWKS we can use")
    await _expect(
        await _admin(client, rid, "review", {"outcome": "upheld", "reason": "x"}),
        409,
        "/problems/conflict",
    )
    await _expect(await _as_requester(client, created, "dispute", {"reason": "We can"}), 200)
    view = await _expect(
        await _admin(client, rid, "review", {"outcome": "upheld", "reason": "Still no"}), 200
    )
    assert view["status"] == "rejected"
    await _expect(await _as_requester(client, created, "dispute", {"reason": "Again"}), 200)
    view = await _expect(
        await _admin(client, rid, "review", {"outcome": "revised", "reason": "Fine"}), 200
    )
    assert view["status"] == "received"
    view = await _expect(await _admin(client, rid, "decision", {"decision": "approve"}), 200)
    assert view["status"] == "approved" and view["client_id"]


async def test_the_requester_steps_need_the_status_token_and_the_window(
    client: Any, config: Config
) -> None:
    _, jwk = new_key("ed25519", kid="k1")
    created = await submit_request(client, [jwk])
    rid = created["id"]
    response = await client.post(f"/v1/interop-requests/{rid}/comments", json={"text": "hi"})
    await _expect(response, 401, "/problems/unauthorized")
    wrong = {**created, "status_token": "not-it"}
    await _expect(await _as_requester(client, wrong, "comments", {"text": "hi"}), 404)
    # No plan yet: nothing to comment on.
    await _expect(
        await _as_requester(client, created, "comments", {"text": "hi"}), 409, "/problems/conflict"
    )
    await _expect(
        await _as_requester(client, created, "comments", {"text": ""}),
        422,
        "/problems/validation",
    )
    await decide(client, rid, "approve")
    await _expect(
        await _admin(client, rid, "plan", {"next_update": _day(2), "live": _day(1)}),
        422,
        "/problems/validation",
    )
    await _expect(
        await _admin(client, rid, "plan", {"next_update": _day(2), "live": _day(9)}), 200
    )
    # After the window (ten working days), comments and disputes are refused.
    later = RequestProcess(client.app[STORE], config, clock=lambda: _now_ms() + 30 * _DAY_MS)
    with pytest.raises(Conflict, match="window"):
        await later.comment(rid, CommentIn(text="late"))
    with pytest.raises(Conflict, match="window"):
        await later.dispute(rid, DisputeIn(reason="late"))
    assert (await client.app[INTEROP_REQUESTS].admin_view(rid)).status == "planned"


def _now_ms() -> int:
    return int(dt.datetime.now(dt.UTC).timestamp() * 1000)


async def test_a_confidential_requester_is_not_named_in_public(client: Any) -> None:
    _, jwk = new_key("ed25519", kid="k1")
    response = await client.post(
        "/v1/interop-requests",
        json={
            "organisation": "Stealth Messenger",
            "contact_email": "a@stealth.example",
            "services": ["whatsapp"],
            "functionalities": ["text"],
            "jwks": {"keys": [jwk]},
            "confidential": True,
        },
    )
    created = await _expect(response, 201)
    page = await (await client.get("/requests")).text()
    assert "Stealth Messenger" not in page and "(confidential)" in page
    admin = await client.app[INTEROP_REQUESTS].admin_view(created["id"])
    assert admin.organisation == "Stealth Messenger" and admin.confidential


async def test_overdue_deadlines_are_flagged(client: Any, config: Config) -> None:
    _, jwk = new_key("ed25519", kid="k1")
    created = await submit_request(client, [jwk])
    service = InteropRequests(
        client.app[STORE],
        config,
        client.app[EGRESS],
        clock=lambda: created["received_at"] + 40 * _DAY_MS,
    )
    view = await service.admin_view(created["id"])
    flags = {d.name: d.overdue for d in view.deadlines}
    assert flags == {"eligibility": True, "art_7_5": False}


async def test_the_requester_page_shows_the_full_log_for_the_status_token(client: Any) -> None:
    _, jwk = new_key("ed25519", kid="k1")
    created = await submit_request(client, [jwk])
    await decide(client, created["id"], "reject", reason="Key type not offered yet")
    public = await (await client.get(f"/requests/{created['id']}")).text()
    assert "Key type not offered" not in public
    assert f'action="/requests/{created["id"]}/status"' in public
    response = await client.post(
        f"/requests/{created['id']}/status", data={"status_token": created["status_token"]}
    )
    assert response.status == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert "Key type not offered yet" in await response.text()
    response = await client.post(f"/requests/{created['id']}/status", data={"status_token": "x"})
    await _expect(response, 404, "/problems/not-found")
    response = await client.post(f"/requests/{created['id']}/status", data={})
    await _expect(response, 422, "/problems/validation")
