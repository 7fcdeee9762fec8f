"""The bench report as a table for people (JSON is the report itself)."""

from __future__ import annotations

from typing import Any


def _row(cells: list[str], widths: list[int]) -> str:
    pairs = enumerate(zip(cells, widths, strict=True))
    return "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in pairs)


def table(report: dict[str, Any]) -> str:
    """Rounds and medians, end to end, memory and the targets, as aligned text."""
    head = ["round", "baseline req/s", "base p99 ms", "gateway acc/s", "gw p50 ms", "gw p99 ms",
            "gw errors", "ratio"]  # fmt: skip
    rows = [head]
    for r in report["rounds"]:
        b, g = r["baseline"], r["gateway"]
        rows.append(
            [str(r["round"]), f"{b['rps']:.0f}", f"{b['p99_ms']:.2f}",
             f"{g['accepted_per_s']:.0f}", f"{g['p50_ms']:.2f}", f"{g['p99_ms']:.2f}",
             str(g["errors"]), f"{r['ratio']:.3f}"]
        )  # fmt: skip
    m = report["median"]
    rows.append(
        ["median", f"{m['baseline_rps']:.0f}", f"{m['baseline_p99_ms']:.2f}",
         f"{m['gateway_accepted_per_s']:.0f}", f"{m['gateway_p50_ms']:.2f}",
         f"{m['gateway_p99_ms']:.2f}", str(m["gateway_errors"]), f"{m['ratio']:.3f}"]
    )  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    machine = report["machine"]
    lines = [
        f"load generator: {machine['load_generator']}, {report['options']['connections']} "
        f"connections, {report['options']['duration_s']:g} s per round; server on cpu "
        f"{machine['server_cpu']}, client on cpu {machine['client_cpu']}; load average "
        f"{machine['load_average']} -> {machine.get('load_average_end')}",
        *(_row(row, widths) for row in rows),
    ]
    for name in ("standalone", "postgres", "compare"):
        other = report["median"].get(name)
        if other:
            lines.append(
                f"{name}: median {other['accepted_per_s']:.0f} accepted/s, "
                f"p50 {other['p50_ms']:.2f} ms, p99 {other['p99_ms']:.2f} ms, "
                f"ratio {other['ratio']:.3f}"
            )
    for key in ("end_to_end", "end_to_end_standalone", "end_to_end_postgres",
                "end_to_end_compare"):  # fmt: skip
        e2e = report.get(key)
        if not e2e:
            continue
        lines.append(
            f"{key.replace('_', ' ')}: {e2e['delivered']} delivered ({e2e['failed']} failed) of "
            f"{e2e['accepted']} accepted in {e2e['seconds']:.2f} s = "
            f"{e2e['delivered_per_s']:.0f} delivered/s"
        )
    memory = report.get("memory")
    if memory:
        lines.append(
            f"memory: RSS {memory['rss_mb_before']:.1f} MB -> "
            f"{memory['rss_mb_after_messages']:.1f} MB after {memory['accepted']} messages; "
            f"{memory['rss_mb_with_subscribers']:.1f} MB with {memory['subscribers']} idle "
            f"WebSocket subscribers"
        )
    lines.append(
        "targets: "
        + ", ".join(f"{name} {'ok' if ok else 'MISSED'}" for name, ok in report["targets"].items())
    )
    return "\n".join(lines)
