"""The compliance report for a period: accepted, refused and delivered messages apart, the
exchange matrix, latency without long waits, overdue functionalities, deadline tables."""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_app
from gateway.clock import now_ms
from gateway.config import FunctionalityConfig, load_config
from gateway.http.app_keys import STORE
from gateway.service.audit.log import AuditContext, AuditLog
from gateway.service.audit.pseudonym import load_pseudonymizer
from gateway.service.audit.report import build_report
from gateway.service.audit.report_html import bar_chart, render_html
from gateway.service.principal import Principal
from gateway.store import open_store
from tests.conftest import make_config
from tests.onboarding_helpers import decide, new_key, submit_request


async def _request(
    log: AuditLog, action: str, route: str, status: int, client: str, **attrs: Any
) -> None:
    ctx = AuditContext(
        request_id=uuid.uuid4().hex,
        method="POST" if action != "events.pull" else "GET",
        route=route,
        action=action,
        who=lambda: Principal(kind="provider", client_id=client),
    )
    ctx.attrs.update(attrs)
    ctx.finish()
    await log.record_request(ctx, status=status)


@pytest.fixture
async def audited(tmp_path: Path) -> Any:
    store = await open_store(f"sqlite:///{tmp_path / 'gateway.db'}")
    log = AuditLog(store, chain_id="main", pseudonymize=load_pseudonymizer(tmp_path))
    yield store, log
    await store.close()


async def test_the_report_keeps_accepted_refused_and_delivered_apart(audited: Any) -> None:
    store, log = audited
    # Before the period: must not count.
    await _request(log, "message.accept", "/v1/messages", 202, "acme", service="whatsapp")
    await asyncio.sleep(0.01)
    start = now_ms()
    for _ in range(5):
        await _request(log, "message.accept", "/v1/messages", 202, "acme", service="whatsapp")
    await _request(log, "receipt.accept", "/v1/receipts", 202, "acme", service="messenger")
    for _ in range(11):
        await _request(
            log,
            "message.accept",
            "/v1/messages",
            404,
            "acme",
            problem="/problems/unknown-recipient",
        )
    await _request(
        log, "message.accept", "/v1/messages", 422, "beta", problem="/problems/content-rejected"
    )
    await _request(log, "events.pull", "/v1/events", 200, "acme")
    for direction, provider in (("to_platform", None), ("to_provider", "beta")):
        attrs = {"service": "whatsapp", "kind": "message", "direction": direction}
        if provider:
            attrs["provider"] = provider
        await log.record_event(action="message.deliver", attrs=attrs)
    await log.record_event(
        action="message.deliver_failed", attrs={"service": "whatsapp", "reason": "rejected"}
    )
    end = now_ms()

    report = await build_report(store, load_config(env={}), start_ms=start, end_ms=end)
    assert report["period"]["chosen"] is True
    assert report["messages"] == {
        "accepted": 6,
        "refused": 12,
        "refused_by_reason": [
            {"status": 404, "reason": "/problems/unknown-recipient", "count": 11},
            {"status": 422, "reason": "/problems/content-rejected", "count": 1},
        ],
        "delivered": {"to_platform": 1, "to_provider": 1},
        "failed_by_reason": {"rejected": 1},
    }
    assert report["exchange"] == [
        {"provider": "acme", "service": "messenger", "kind": "receipt",
         "direction": "to_platform", "count": 1},
        {"provider": "acme", "service": "whatsapp", "kind": "message",
         "direction": "to_platform", "count": 5},
        {"provider": "beta", "service": "whatsapp", "kind": "message",
         "direction": "to_provider", "count": 1},
    ]  # fmt: skip
    assert "events.pull" not in {row["action"] for row in report["latency"]}
    assert "message.accept" in {row["action"] for row in report["latency"]}

    everything = await build_report(store, load_config(env={}))
    assert everything["messages"]["accepted"] == 7
    assert everything["period"]["chosen"] is False

    html = render_html(report)
    assert "Exchange matrix" in html and "@media print" in html
    assert re.search(r"<th>accepted</th>.*?<td class=\"n\">6</td>", html, re.S)


async def test_overdue_functionalities_are_flagged_against_the_law(audited: Any) -> None:
    store, _ = audited
    config = load_config(env={})
    whatsapp = config.services["whatsapp"]
    functionalities = {
        **whatsapp.functionalities,
        "group_text": FunctionalityConfig(state="planned", planned_for="2026-03-01"),
    }
    services = {
        **config.services,
        "whatsapp": msgspec.structs.replace(whatsapp, functionalities=functionalities),
    }
    report = await build_report(store, msgspec.structs.replace(config, services=services))
    rows = {(f["service"], f["functionality"]): f for f in report["functionalities"]}
    group = rows[("whatsapp", "group_text")]
    assert group["overdue"] is True and group["law_date"] == "2025-09-06"
    assert rows[("messenger", "group_text")]["overdue"] is False  # available
    calls = rows[("whatsapp", "voice_calls")]
    assert calls["article"] == "7(2)(c)"
    assert calls["planned_after_law"] is True  # 2028-03-01 is after 2027-09-06
    html = render_html(report)
    assert "overdue" in html and "planned after the law" in html


async def test_deadline_tables_count_per_phase(tmp_path: Path) -> None:
    config = make_config(tmp_path / "data")
    app = create_app(config)
    async with TestClient(TestServer(app)) as client:
        _, jwk = new_key("ed25519", kid="k1")
        first = await submit_request(client, [jwk])
        await submit_request(client, [jwk])
        await decide(client, first["id"], "approve")
        report = await build_report(client.app[STORE], config)
    rows = {r["deadline"]: r for r in report["deadlines"]}
    assert rows["eligibility"] == {
        "deadline": "eligibility", "label": "Eligibility decision", "total": 2, "on_time": 1,
        "late": 0, "open": 1, "overdue": 0,
    }  # fmt: skip
    assert rows["art_7_5"]["open"] == 2
    assert "Request deadlines, per phase" in render_html(report)


def test_chart_labels_get_room_and_the_axis_its_ticks() -> None:
    long = "a-provider-with-a-very-long-client-id / whatsapp"
    svg = bar_chart("Requests", [(long, {"2xx": 30}), ("b / messenger", {"2xx": 5})], "requests")
    # The label column fits the longest label: its right edge is left of the first bar.
    label_end = int(re.search(r'<text x="(\d+)" y="\d+" text-anchor="end">', svg)[1])
    first_bar = float(re.search(r'<rect x="([\d.]+)"', svg)[1])
    assert label_end < first_bar
    assert ">0</text>" in svg and ">30</text>" in svg and ">requests</text>" in svg
