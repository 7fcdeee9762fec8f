"""The report reads interop requests when their table exists, against the 90-day deadline."""

from __future__ import annotations

import time
from typing import Any

from gateway.config import load_config
from gateway.service.audit.report import DAY_MS, build_report, percentile
from gateway.service.audit.report_html import render_html
from gateway.store import open_store


def test_percentile_is_nearest_rank() -> None:
    values = list(range(1, 101))
    assert (percentile(values, 50), percentile(values, 99), percentile([], 50)) == (50, 99, 0)


async def test_interop_requests_against_their_deadline(make_audit_db: Any) -> None:
    db = await make_audit_db(records=3, checkpoint_at=())
    now = time.time_ns() // 1_000_000
    old = now - 200 * DAY_MS
    db.sql(
        "CREATE TABLE interop_requests (id TEXT, organisation TEXT, status TEXT, "
        "received_at BIGINT, deadline_at BIGINT, decided_at BIGINT, live_at BIGINT)",
        f"INSERT INTO interop_requests VALUES ('r1', 'Fast Ltd', 'approved', {old}, "
        f"{old + 90 * DAY_MS}, {old + DAY_MS}, {old + 30 * DAY_MS})",
        f"INSERT INTO interop_requests VALUES ('r2', 'Slow <b>Co</b>', 'received', {old}, "
        f"{old + 90 * DAY_MS}, NULL, NULL)",
        f"INSERT INTO interop_requests VALUES ('r3', 'New', 'received', {now}, "
        f"{now + 90 * DAY_MS}, NULL, NULL)",
    )
    store = await open_store(db.url, readonly=True)
    try:
        report = await build_report(store, load_config(env={}))
    finally:
        await store.close()
    section = report["interop_requests"]
    assert section["available"] is True
    assert [(i["id"], i["deadline_met"]) for i in section["items"]] == [
        ("r1", True),
        ("r2", False),
        ("r3", None),
    ]
    html = render_html(report)
    assert "Slow &lt;b&gt;Co&lt;/b&gt;" in html and "missed" in html
