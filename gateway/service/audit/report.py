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
from gateway.service.request_tracker import deadlines_of
from gateway.service.working_days import WorkingDays
from gateway.store import Store
from gateway.store import audit as audit_store
from gateway.store import report as report_store
from gateway.store.interop_requests import InteropRequestRecord

Report = dict[str, Any]
DAY_MS = 86_400_000

# Requests that wait by design (long polls, WebSocket streams): their duration is the wait, not
# the gateway's latency, so they stay out of the latency section.
LONG_WAITS = frozenset({"events.pull", "events.stream"})
# A provider's request to send something, and the kind of exchange it is.
SENDS = {
    "message.accept": "message",
    "receipt.accept": "receipt",
    "typing.accept": "typing",
    "group.message": "group_message",
}
# Art. 7(2): group messaging within two years of designation (point (b)), calls within four
# (point (c)); the designation of Meta's services under Art. 3 is of 6 September 2023.
DESIGNATED_ON = "2023-09-06"
LAW_DATES = {
    "group_text": ("7(2)(b)", "2025-09-06"),
    "group_files": ("7(2)(b)", "2025-09-06"),
    "voice_calls": ("7(2)(c)", "2027-09-06"),
    "video_calls": ("7(2)(c)", "2027-09-06"),
}


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

    def __init__(self, start_ms: int | None = None, end_ms: int | None = None) -> None:
        self.start_ms = start_ms
        self.end_ms = end_ms
        self.records = 0
        self.first_at: int | None = None
        self.last_at: int | None = None
        self.requests: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
        self.latency: dict[str, list[int]] = defaultdict(list)
        self.accepted = 0
        self.refused: Counter[tuple[int, str]] = Counter()
        self.delivered: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        # (provider, service, kind, direction) -> count
        self.exchange: Counter[tuple[str, str, str, str]] = Counter()
        self.rejections: Counter[tuple[int, str]] = Counter()
        self.first_ok: dict[str, int] = {}  # client_id -> first successful request

    def add(self, f: dict[str, Any]) -> None:
        at = f["at"]
        if (self.start_ms is not None and at < self.start_ms) or (
            self.end_ms is not None and at > self.end_ms
        ):
            return
        self.records += 1
        self.first_at = at if self.first_at is None else min(self.first_at, at)
        self.last_at = at if self.last_at is None else max(self.last_at, at)
        attrs, status = f["attrs"], f["status"]
        service = str(attrs.get("service", "-"))
        self.requests[(_party(f), service)][_outcome(status)] += 1
        action = f["action"]
        if f["method"] is not None and f["duration_us"] is not None and action not in LONG_WAITS:
            self.latency[action].append(f["duration_us"])
        self._messages(f, action, service, attrs, status)
        client_id = f["client_id"]
        if client_id and status is not None and status < 400:
            self.first_ok[client_id] = min(at, self.first_ok.get(client_id, at))
        if status is not None and status >= 400:
            self.rejections[(status, str(attrs.get("problem", "-")))] += 1

    def _messages(
        self, f: dict[str, Any], action: str, service: str, attrs: dict[str, Any], status: Any
    ) -> None:
        """Accepted, refused, delivered and failed apart; the exchange matrix."""
        if action in SENDS and f["method"] is not None and status is not None:
            if status < 400:
                self.accepted += 1
                provider = str(f["client_id"] or "-")
                self.exchange[(provider, service, SENDS[action], "to_platform")] += 1
            else:
                self.refused[(status, str(attrs.get("problem", "-")))] += 1
        elif action == "message.deliver":
            direction = str(attrs.get("direction", "-"))
            self.delivered[direction] += 1
            if direction == "to_provider":
                provider = str(attrs.get("provider", "-"))
                kind = str(attrs.get("kind", "-"))
                self.exchange[(provider, service, kind, direction)] += 1
        elif action == "message.deliver_failed":
            self.failed[str(attrs.get("reason", "-"))] += 1

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
        chosen = self.start_ms is not None or self.end_ms is not None
        start = self.start_ms if self.start_ms is not None else self.first_at
        end = self.end_ms if self.end_ms is not None else self.last_at
        return {
            "period": {"from": iso(start), "to": iso(end), "chosen": chosen},
            "requests": [
                {"party": party, "service": service, "total": sum(c.values()), "outcomes": dict(c)}
                for (party, service), c in sorted(self.requests.items())
            ],
            "latency": latency,
            "latency_excludes": sorted(LONG_WAITS),
            "messages": {
                "accepted": self.accepted,
                "refused": sum(self.refused.values()),
                "refused_by_reason": [
                    {"status": status, "reason": reason, "count": n}
                    for (status, reason), n in sorted(self.refused.items())
                ],
                "delivered": dict(sorted(self.delivered.items())),
                "failed_by_reason": dict(sorted(self.failed.items())),
            },
            "exchange": [
                {"provider": p, "service": s, "kind": k, "direction": d, "count": n}
                for (p, s, k, d), n in sorted(self.exchange.items())
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


def _functionalities(config: Config, today: str) -> list[dict[str, Any]]:
    """The offer's functionalities; a planned one is overdue once its date or the law's passed,
    and flagged when its date is later than the law's."""
    found = []
    for service, sc in sorted(config.services.items()):
        for name, f in sc.functionalities.items():
            article, law_date = LAW_DATES.get(name, (None, None))
            state = f.state if sc.enabled else "disabled"
            planned = state == "planned"
            found.append(
                {
                    "service": service,
                    "functionality": name,
                    "state": state,
                    "planned_for": f.planned_for,
                    "article": article,
                    "law_date": law_date,
                    "overdue": planned
                    and (
                        (f.planned_for is not None and f.planned_for < today)
                        or (law_date is not None and law_date < today)
                    ),
                    "planned_after_law": planned
                    and law_date is not None
                    and (f.planned_for is None or f.planned_for > law_date),
                }
            )
    return found


async def build_report(
    store: Store, config: Config, *, start_ms: int | None = None, end_ms: int | None = None
) -> Report:
    """The report as plain data (JSON-ready), over the records of [start_ms, end_ms]."""
    now = now_ms()
    tally = _Tally(start_ms, end_ms)
    audit = await _audit_state(store, tally)
    requests = await _interop_requests(store, config, now, tally.first_ok)
    return {
        "title": "DMA Art. 7 interoperability: compliance report",
        "generated_at": iso(now),
        "audit": audit,
        **tally.sections(),
        "interop_requests": requests,
        "deadlines": await _deadline_tables(store, config, now),
        "designated_on": DESIGNATED_ON,
        "functionalities": _functionalities(config, (iso(now) or "")[:10]),
        "data_register": list(DATA_REGISTER),
    }


async def _deadline_tables(store: Store, config: Config, now: int) -> list[dict[str, Any]]:
    """Per deadline of the request process: how many were met on time, late, or are open."""
    if "interop_requests" not in await existing_tables(store):
        return []
    days = WorkingDays(config.requests.holidays)
    rows: dict[str, dict[str, Any]] = {}
    for row in await report_store.interop_request_rows(store):
        for d in deadlines_of(_request_record(row), now, days, config.requests):
            if d.name == "comments":
                continue  # the requester's window, not a deadline of the gatekeeper
            tally = rows.setdefault(
                d.name,
                {"deadline": d.name, "label": d.label.split(",")[0], "total": 0, "on_time": 0,
                 "late": 0, "open": 0, "overdue": 0},
            )  # fmt: skip
            tally["total"] += 1
            if d.met_at is not None:
                tally["on_time" if d.met_at <= d.due_at else "late"] += 1
            elif d.overdue:
                tally["overdue"] += 1
            else:
                tally["open"] += 1
    order = ["eligibility", "review", "go_live", "art_7_5"]
    return sorted(rows.values(), key=lambda r: order.index(r["deadline"]))


def _request_record(row: dict[str, Any]) -> InteropRequestRecord:
    """A request of a row read with `SELECT *` (columns of later migrations may be missing)."""
    known = set(InteropRequestRecord.__struct_fields__) - {"services", "functionalities", "jwks"}
    fields = {k: v for k, v in row.items() if k in known}
    fields["confidential"] = bool(fields.get("confidential", False))
    return InteropRequestRecord(services=[], functionalities=[], jwks=[], **fields)


def render_json(report: Report) -> str:
    """The report as indented JSON."""
    return msgspec.json.format(msgspec.json.encode(report), indent=2).decode() + "\n"
