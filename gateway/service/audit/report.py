"""The compliance report (Art. 11, 26): built from the audit log, the interop-request table and
the configuration, rendered as JSON or as one self-contained HTML page (report_html.py)."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime
from typing import Any

import msgspec

from gateway.clock import now_ms
from gateway.config import Config
from gateway.service.audit.export import record_fields
from gateway.service.audit.register import DATA_REGISTER
from gateway.service.gauges import existing_tables
from gateway.store import Store
from gateway.store import audit as audit_store
from gateway.store import report as report_store

Report = dict[str, Any]
DAY_MS = 86_400_000


def iso(ms: int | None) -> str | None:
    """ms since the epoch as ISO 8601 UTC (seconds)."""
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


def percentile(sorted_values: list[int], p: float) -> int:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return 0
    rank = max(1, -(-len(sorted_values) * p // 100))
    return sorted_values[int(rank) - 1]


def _outcome(status: int | None) -> str:
    return "event" if status is None else f"{status // 100}xx"


def _party(fields: dict[str, Any]) -> str:
    if fields["actor"] == "provider" and fields["client_id"]:
        return str(fields["client_id"])
    return str(fields["actor"])


class _Tally:
    """Accumulates the audit-derived sections in one pass over the records."""

    def __init__(self) -> None:
        self.records = 0
        self.first_at: int | None = None
        self.last_at: int | None = None
        self.requests: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
        self.latency: dict[str, list[int]] = defaultdict(list)
        self.messages: Counter[tuple[str, str, str, str]] = Counter()
        self.rejections: Counter[tuple[int, str]] = Counter()
        self.first_ok: dict[str, int] = {}  # client_id -> first successful request

    def add(self, f: dict[str, Any]) -> None:
        self.records += 1
        at = f["at"]
        self.first_at = at if self.first_at is None else min(self.first_at, at)
        self.last_at = at if self.last_at is None else max(self.last_at, at)
        attrs, status = f["attrs"], f["status"]
        service = str(attrs.get("service", "-"))
        self.requests[(_party(f), service)][_outcome(status)] += 1
        if f["method"] is not None and f["duration_us"] is not None:
            self.latency[f["action"]].append(f["duration_us"])
        if f["action"].startswith("message."):
            kind = str(attrs.get("kind", attrs.get("type", "-")))
            direction = str(attrs.get("direction", "-"))
            self.messages[(f["action"], service, kind, direction)] += 1
        client_id = f["client_id"]
        if client_id and status is not None and status < 400:
            self.first_ok[client_id] = min(at, self.first_ok.get(client_id, at))
        if status is not None and status >= 400:
            self.rejections[(status, str(attrs.get("problem", "-")))] += 1

    def sections(self) -> Report:
        latency = []
        for action, values in sorted(self.latency.items()):
            values.sort()
            latency.append(
                {
                    "action": action,
                    "count": len(values),
                    "p50_ms": round(percentile(values, 50) / 1000, 3),
                    "p99_ms": round(percentile(values, 99) / 1000, 3),
                }
            )
        return {
            "period": {"from": iso(self.first_at), "to": iso(self.last_at)},
            "requests": [
                {"party": party, "service": service, "total": sum(c.values()), "outcomes": dict(c)}
                for (party, service), c in sorted(self.requests.items())
            ],
            "latency": latency,
            "messages": [
                {"action": a, "service": s, "kind": k, "direction": d, "count": n}
                for (a, s, k, d), n in sorted(self.messages.items())
            ],
            "rejections": [
                {"status": status, "reason": reason, "count": n}
                for (status, reason), n in sorted(self.rejections.items())
            ],
        }


async def _audit_state(store: Store, tally: _Tally) -> Report:
    chains = []
    for chain_id, last in (await audit_store.chain_heads(store)).items():
        cp = await audit_store.latest_checkpoint(store, chain_id)
        async for page in audit_store.record_pages(store, chain_id, 0, last):
            for row in page:
                tally.add(record_fields(row))
        chains.append(
            {
                "chain_id": chain_id,
                "last_seq": last,
                "last_checkpoint_seq": None if cp is None else cp.seq,
                "last_checkpoint_at": None if cp is None else iso(cp.at),
            }
        )
    return {"records": tally.records, "chains": chains}


async def _interop_requests(
    store: Store, config: Config, now: int, first_traffic: dict[str, int]
) -> Report:
    """Requests against the Art. 7(5) deadline. "Live" is when the approved provider was
    created (its credentials work); its first successful request is shown beside it."""
    deadline_days = config.request_deadline_days
    tables = await existing_tables(store)
    if "interop_requests" not in tables:
        return {"available": False, "deadline_days": deadline_days, "items": []}
    live_by_request: dict[str, int] = {}
    if "providers" in tables:
        live_by_request = await report_store.provider_created_by_request(store)
    items = []
    for r in await report_store.interop_request_rows(store):
        received = r.get("received_at")
        deadline = r.get("deadline_at") or (
            None if received is None else received + deadline_days * DAY_MS
        )
        decided = r.get("decided_at")
        live = r.get("live_at") or live_by_request.get(str(r.get("id")))
        done = live if live is not None else decided
        if done is not None and deadline is not None:
            met: bool | None = done <= deadline
        elif deadline is not None and now > deadline:
            met = False  # still open past the deadline
        else:
            met = None
        items.append(
            {
                "id": str(r.get("id", "")),
                "organisation": r.get("organisation"),
                "status": r.get("status"),
                "received_at": iso(received),
                "decided_at": iso(decided),
                "live_at": iso(live),
                "first_traffic_at": iso(first_traffic.get(str(r.get("client_id")))),
                "deadline_at": iso(deadline),
                "deadline_met": met,
            }
        )
    items.sort(key=lambda i: i["received_at"] or "")
    return {"available": True, "deadline_days": deadline_days, "items": items}


def _functionalities(config: Config) -> list[dict[str, Any]]:
    return [
        {
            "service": service,
            "functionality": name,
            "state": f.state if sc.enabled else "disabled",
            "planned_for": f.planned_for,
        }
        for service, sc in sorted(config.services.items())
        for name, f in sc.functionalities.items()
    ]


async def build_report(store: Store, config: Config) -> Report:
    """The report as plain data (JSON-ready)."""
    now = now_ms()
    tally = _Tally()
    audit = await _audit_state(store, tally)
    return {
        "title": "DMA Art. 7 interoperability: compliance report",
        "generated_at": iso(now),
        "audit": audit,
        **tally.sections(),
        "interop_requests": await _interop_requests(store, config, now, tally.first_ok),
        "functionalities": _functionalities(config),
        "data_register": list(DATA_REGISTER),
    }


def render_json(report: Report) -> str:
    """The report as indented JSON."""
    return msgspec.json.format(msgspec.json.encode(report), indent=2).decode() + "\n"
