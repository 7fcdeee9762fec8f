"""The report reads interop requests when their table exists, against the 90-day deadline."""

from __future__ import annotations

import time
from typing import Any

import pytest

from gateway.config import load_config
from gateway.service.audit.report import DAY_MS, build_report, percentile
from gateway.service.audit.report_html import render_html
from gateway.store import open_store


@pytest.fixture
def audit_db_url(store_url: str) -> str:
    """This module's audit databases, on every storage backend."""
    return store_url


def test_percentile_is_nearest_rank() -> None:
    values = list(range(1, 101))
    assert (percentile(values, 50), percentile(values, 99), percentile([], 50)) == (50, 99, 0)


def request(
    id_: str,
    org: str,
    status: str,
    received: int,
    *,
    decided: int | None = None,
    client_id: str | None = None,
) -> str:
    """An interop_requests row as onboarding writes it (0002_onboarding.sql)."""
    return (
        "INSERT INTO interop_requests (id, organisation, contact_email, services, "
        "functionalities, jwks, status, status_token_hash, received_at, deadline_at, "
        f"decided_at, client_id) VALUES ('{id_}', '{org}', 'x@example.org', '[]', '[]', '{{}}', "
        f"'{status}', 'h', {received}, {received + 90 * DAY_MS}, "
        f"{'NULL' if decided is None else decided}, "
        f"{'NULL' if client_id is None else repr(client_id)})"
    )


async def test_interop_requests_against_their_deadline(make_audit_db: Any) -> None:
    db = await make_audit_db(records=3, checkpoint_at=())
    now = time.time_ns() // 1_000_000
    old = now - 200 * DAY_MS
    db.sql(
        request("r1", "Fast Ltd", "approved", old, decided=old + DAY_MS, client_id="acme"),
        "INSERT INTO providers (client_id, request_id, organisation, jwks, state, services, "
        f"functionalities, scopes, created_at, updated_at) VALUES ('acme', 'r1', 'Fast Ltd', "
        f"'{{}}', 'active', '[]', '[]', '[]', {old + 2 * DAY_MS}, {old + 2 * DAY_MS})",
        request("r2", "Slow <b>Co</b>", "received", old),
        request("r3", "New", "received", now),
    )
    store = await open_store(db.url, readonly=True)
    try:
        report = await build_report(store, load_config(env={}))
    finally:
        await store.close()
    section = report["interop_requests"]
    assert section["available"] is True
    assert section["items"][0]["live_at"] is not None
    assert section["items"][0]["first_traffic_at"] is not None  # acme's records in the log
    assert [(i["id"], i["deadline_met"]) for i in section["items"]] == [
        ("r1", True),
        ("r2", False),
        ("r3", None),
    ]
    html = render_html(report)
    assert "Slow &lt;b&gt;Co&lt;/b&gt;" in html and "missed" in html
