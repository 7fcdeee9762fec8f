"""The compliance report as one self-contained HTML page: inline CSS and SVG, no script, no
external asset, so it opens offline and archives as a single file."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

from gateway.service.audit.report import Report

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:70rem;color:#1c2430}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ccd}
table{border-collapse:collapse;margin:.5rem 0}td,th{padding:.2rem .6rem;border:1px solid #dde}
th{background:#f2f4f8;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#17663a}.bad{color:#a3161b}.muted{color:#667}svg{display:block;margin:.5rem 0}
svg text{font:12px system-ui,sans-serif;fill:#1c2430}.kpi td{font-size:1.1rem}
@page{size:A4;margin:14mm}
@media print{body{margin:0;max-width:none;font-size:10pt}h2{break-after:avoid}
table,svg,figure{break-inside:avoid}tr{break-inside:avoid}svg{max-width:100%;height:auto}
a{color:inherit;text-decoration:none}}
"""
_COLORS = {"2xx": "#2f8f5b", "3xx": "#4a78c2", "4xx": "#d08a1e", "5xx": "#c0392b"}


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    if not rows:
        return '<p class="muted">None recorded.</p>'
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="n">{v}</td>'
            if isinstance(v, int | float) and not isinstance(v, bool)
            else f"<td>{_cell(v)}</td>"
            for v in row
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _cell(value: Any) -> str:
    if value is None:
        return '<span class="muted">-</span>'
    if value is True:
        return '<span class="ok">met</span>'
    if value is False:
        return '<span class="bad">missed</span>'
    return escape(str(value))


_CHAR_W = 7.0  # approximate width of one character of the 12px chart font


def _ticks(top: float, count: int = 5) -> list[float]:
    """Round tick values from 0 to at least `top`."""
    raw = top / count
    magnitude = 10 ** (len(str(int(raw))) - 1) if raw >= 1 else 1
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    return [step * i for i in range(count + 1) if step * i <= top + step - 1e-9]


def bar_chart(title: str, bars: Sequence[tuple[str, dict[str, float]]], axis: str = "") -> str:
    """Horizontal stacked bars as inline SVG, with a value axis and its label; the label column
    is as wide as the longest label (long ones are cut with an ellipsis), so nothing overlaps."""
    if not bars:
        return ""
    width, row_h = 760, 22
    labels = [label if len(label) <= 44 else label[:43] + "…" for label, _ in bars]
    label_w = int(min(44, max(len(label) for label in labels)) * _CHAR_W) + 12
    top = max(sum(parts.values()) for _, parts in bars) or 1
    ticks = _ticks(top)
    scale_top = ticks[-1] or 1
    plot_w = width - label_w - 70  # room on the right for the total of the longest bar
    plot_top = 26
    plot_h = row_h * len(bars)
    height = plot_top + plot_h + 46
    out = [
        f'<figure><svg role="img" aria-label="{escape(title)}" width="{width}" height="{height}"'
        f' viewBox="0 0 {width} {height}">',
        f'<text x="0" y="14" font-weight="bold">{escape(title)}</text>',
    ]
    for i, ((_, parts), label) in enumerate(zip(bars, labels, strict=True)):
        y = plot_top + i * row_h
        out.append(
            f'<text x="{label_w - 8}" y="{y + 14}" text-anchor="end">{escape(label)}</text>'
        )
        x = float(label_w)
        for part, value in parts.items():
            w = plot_w * value / scale_top
            color = _COLORS.get(part, "#5b6b8c")
            out.append(
                f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row_h - 6}" fill="{color}">'
                f"<title>{escape(part)}: {value:g}</title></rect>"
            )
            x += w
        out.append(f'<text x="{x + 4:.1f}" y="{y + 14}">{sum(parts.values()):g}</text>')
    axis_y = plot_top + plot_h + 2
    out.append(
        f'<line x1="{label_w}" y1="{axis_y}" x2="{label_w + plot_w}" y2="{axis_y}" stroke="#667"/>'
    )
    for tick in ticks:
        x = label_w + plot_w * tick / scale_top
        out.append(
            f'<line x1="{x:.1f}" y1="{axis_y}" x2="{x:.1f}" y2="{axis_y + 4}" stroke="#667"/>'
            f'<text x="{x:.1f}" y="{axis_y + 16}" text-anchor="middle">{tick:g}</text>'
        )
    if axis:
        out.append(
            f'<text x="{label_w + plot_w / 2:.1f}" y="{axis_y + 34}" text-anchor="middle">'
            f"{escape(axis)}</text>"
        )
    out.append("</svg></figure>")
    return "".join(out)


def _legend() -> str:
    return " ".join(
        f'<span style="color:{color}">&#9632; {name}</span>' for name, color in _COLORS.items()
    )


def render_html(report: Report) -> str:
    """The whole page."""
    audit = report["audit"]
    requests = report["requests"]
    parts = [
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(report['title'])}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(report['title'])}</h1>",
        f"<p>Generated {escape(report['generated_at'])}. Period "
        f"{'chosen' if report['period']['chosen'] else 'covered'}: "
        f"{_cell(report['period']['from'])} to {_cell(report['period']['to'])}. "
        f"{audit['records']} audit records in it.</p>",
        "<h2>Audit log</h2>",
        _table(
            ["chain", "last seq", "last signed checkpoint", "checkpoint time"],
            [
                [c["chain_id"], c["last_seq"], c["last_checkpoint_seq"], c["last_checkpoint_at"]]
                for c in audit["chains"]
            ],
        ),
        "<p>Integrity is established by <code>dma-gateway audit verify</code>, not by this "
        "report.</p>",
        "<h2>Requests per party and service, by outcome</h2>",
        f"<p>{_legend()}</p>",
        bar_chart(
            "Requests by outcome",
            [(f"{r['party']} / {r['service']}", r["outcomes"]) for r in requests],
            axis="requests",
        ),
        _table(
            ["party", "service", "total", "2xx", "4xx", "5xx"],
            [
                [
                    r["party"],
                    r["service"],
                    r["total"],
                    *(r["outcomes"].get(k, 0) for k in ("2xx", "4xx", "5xx")),
                ]
                for r in requests
            ],
        ),
        _messages(report["messages"]),
        _exchange(report["exchange"]),
        "<h2>Latency per action (ms)</h2>",
        "<p>Requests that wait by design are left out: "
        + ", ".join(f"<code>{escape(a)}</code>" for a in report["latency_excludes"])
        + " (long polls and event streams).</p>",
        bar_chart(
            "p99 latency per action",
            [(lat["action"], {"p99": lat["p99_ms"]}) for lat in report["latency"]],
            axis="milliseconds (p99)",
        ),
        _table(
            ["action", "requests", "p50", "p99"],
            [[r["action"], r["count"], r["p50_ms"], r["p99_ms"]] for r in report["latency"]],
        ),
        "<h2>Rejections by reason</h2>",
        _table(
            ["status", "problem type", "count"],
            [[r["status"], r["reason"], r["count"]] for r in report["rejections"]],
        ),
        _interop(report["interop_requests"]),
        _deadlines(report["deadlines"]),
        _functionalities(report["functionalities"], report["designated_on"]),
        "<h2>Data register (Art. 7(8))</h2>",
        _table(
            ["datum", "source", "purpose", "retention", "kept as"],
            [
                [d["datum"], d["source"], d["purpose"], d["retention"], d["kept_as"]]
                for d in report["data_register"]
            ],
        ),
        "</body></html>\n",
    ]
    return "\n".join(parts)


def _interop(section: dict[str, Any]) -> str:
    title = (
        f"<h2>Interop requests against the {section['deadline_days']}-day deadline "
        "(Art. 7(5))</h2>"
    )
    if not section["available"]:
        return title + '<p class="muted">No interop-request table in this database yet.</p>'
    return title + _table(
        [
            "request",
            "organisation",
            "status",
            "received",
            "decided",
            "live",
            "first traffic",
            "deadline",
            "",
        ],
        [
            [
                i["id"],
                i["organisation"],
                i["status"],
                i["received_at"],
                i["decided_at"],
                i["live_at"],
                i["first_traffic_at"],
                i["deadline_at"],
                i["deadline_met"],
            ]
            for i in section["items"]
        ],
    )


def _messages(m: dict[str, Any]) -> str:
    delivered = sum(m["delivered"].values())
    return "".join(
        [
            "<h2>Messages: accepted, refused, delivered</h2>",
            "<p>Sends by providers (messages, receipts, typing, group messages) that the gateway "
            "accepted or refused, and deliveries, counted apart.</p>",
            '<table class="kpi"><tr><th>accepted</th><th>refused</th><th>delivered</th>'
            f'<th>failed</th></tr><tr><td class="n">{m["accepted"]}</td>'
            f'<td class="n">{m["refused"]}</td><td class="n">{delivered}</td>'
            f'<td class="n">{sum(m["failed_by_reason"].values())}</td></tr></table>',
            "<h3>Refused, by reason</h3>",
            _table(
                ["status", "problem type", "count"],
                [[r["status"], r["reason"], r["count"]] for r in m["refused_by_reason"]],
            ),
            "<h3>Delivered, by direction</h3>",
            _table(["direction", "count"], [[d, n] for d, n in m["delivered"].items()]),
            "<h3>Failed deliveries, by reason</h3>",
            _table(["reason", "count"], [[r, n] for r, n in m["failed_by_reason"].items()]),
        ]
    )


def _exchange(rows: list[dict[str, Any]]) -> str:
    return (
        "<h2>Exchange matrix</h2><p>What was exchanged with whom: counts per provider, service, "
        "kind and direction (to_platform: accepted from the provider for a platform user; "
        "to_provider: delivered to the provider). No content, no user.</p>"
        + _table(
            ["provider", "service", "kind", "direction", "count"],
            [[r["provider"], r["service"], r["kind"], r["direction"], r["count"]] for r in rows],
        )
    )


def _deadlines(rows: list[dict[str, Any]]) -> str:
    return "<h2>Request deadlines, per phase</h2>" + _table(
        ["deadline", "requests", "met on time", "met late", "open", "overdue"],
        [[r["label"], r["total"], r["on_time"], r["late"], r["open"], r["overdue"]] for r in rows],
    )


def _functionalities(rows: list[dict[str, Any]], designated_on: str) -> str:
    def flag(f: dict[str, Any]) -> str:
        if f["overdue"]:
            return '<span class="bad">overdue</span>'
        if f["planned_after_law"]:
            return '<span class="bad">planned after the law\'s date</span>'
        return '<span class="ok">on time</span>' if f["state"] == "planned" else ""

    body = "".join(
        "<tr>"
        + "".join(
            f"<td>{_cell(v)}</td>"
            for v in (f["service"], f["functionality"], f["state"], f["planned_for"])
        )
        + f"<td>{_cell(f['article'] and f['article'] + ' by ' + f['law_date'])}</td>"
        + f"<td>{flag(f)}</td></tr>"
        for f in rows
    )
    return (
        "<h2>Functionality availability (reference offer)</h2>"
        f"<p>Dates of Art. 7(2) counted from designation on {escape(designated_on)}.</p>"
        "<table><tr><th>service</th><th>functionality</th><th>state</th><th>planned for</th>"
        f"<th>law</th><th></th></tr>{body}</table>"
    )
