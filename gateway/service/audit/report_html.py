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


def bar_chart(title: str, bars: Sequence[tuple[str, dict[str, float]]]) -> str:
    """Horizontal stacked bars as inline SVG; each bar is a label and its parts."""
    if not bars:
        return ""
    width, label_w, row_h = 720, 220, 22
    top = max(sum(parts.values()) for _, parts in bars) or 1
    height = row_h * len(bars) + 40
    out = [
        f'<svg role="img" aria-label="{escape(title)}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}">',
        f'<text x="0" y="14" font-weight="bold">{escape(title)}</text>',
    ]
    for i, (label, parts) in enumerate(bars):
        y = 24 + i * row_h
        out.append(f'<text x="0" y="{y + 14}">{escape(label[:32])}</text>')
        x = float(label_w)
        for part, value in parts.items():
            w = (width - label_w - 60) * value / top
            color = _COLORS.get(part, "#5b6b8c")
            out.append(
                f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row_h - 6}" fill="{color}">'
                f"<title>{escape(part)}: {value:g}</title></rect>"
            )
            x += w
        total = sum(parts.values())
        out.append(f'<text x="{x + 4:.1f}" y="{y + 14}">{total:g}</text>')
    out.append("</svg>")
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
        f"<p>Generated {escape(report['generated_at'])}. Period covered: "
        f"{_cell(report['period']['from'])} to {_cell(report['period']['to'])}. "
        f"{audit['records']} audit records.</p>",
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
        "<h2>Messages relayed</h2>",
        bar_chart(
            "Messages by service, kind and direction",
            [
                (f"{m['service']} {m['kind']} {m['direction']}", {m["action"]: m["count"]})
                for m in report["messages"]
            ],
        ),
        _table(
            ["action", "service", "kind", "direction", "count"],
            [
                [m["action"], m["service"], m["kind"], m["direction"], m["count"]]
                for m in report["messages"]
            ],
        ),
        "<h2>Latency per action (ms)</h2>",
        bar_chart(
            "p99 latency (ms)",
            [(lat["action"], {"p99": lat["p99_ms"]}) for lat in report["latency"]],
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
        "<h2>Functionality availability (reference offer)</h2>",
        _table(
            ["service", "functionality", "state", "planned for"],
            [
                [f["service"], f["functionality"], f["state"], f["planned_for"]]
                for f in report["functionalities"]
            ],
        ),
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
