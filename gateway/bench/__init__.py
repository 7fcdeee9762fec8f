"""`dma-gateway bench`: benchmark tooling, never imported by the request path."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any


def cmd_bench(args: argparse.Namespace) -> int:
    """Run the benchmark; print the table and the JSON; write the JSON to --out."""
    from gateway.bench.report import table
    from gateway.bench.runner import Options, run

    given = {
        k: v
        for k, v in {
            "duration_s": args.duration, "connections": args.connections,
            "rounds": args.rounds, "messages": args.messages,
            "e2e_messages": args.e2e_messages, "subscribers": args.subscribers,
            "users": args.users, "tool": args.tool,
            "server_cpu": args.server_cpu, "client_cpu": args.client_cpu,
            "compare_with": args.compare_with, "postgres": args.postgres,
            "standalone": False if args.no_standalone else None,
        }.items()
        if v is not None
    }  # fmt: skip
    options = Options.quick_run(**given) if args.quick else Options(**given)
    report: dict[str, Any] = asyncio.run(run(options))
    text = json.dumps(report, indent=2)
    print(table(report), flush=True)
    print(text, flush=True)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    return 0


def register(sub: Any) -> None:
    """Add `bench` to the CLI's subcommands."""
    bench = sub.add_parser(
        "bench",
        help="benchmark the gateway against a bare aiohttp baseline in the same run",
        description="Start a bare aiohttp baseline and real gateways (embedded sandbox; "
        "standalone sandbox process; optionally one PostgreSQL replica), pinned to one core, "
        "and drive them alternately from the other core.",
    )
    bench.add_argument("--duration", type=float, help="seconds per round (default 10)")
    bench.add_argument("--connections", type=int, help="concurrent connections (default 32)")
    bench.add_argument("--rounds", type=int, help="baseline/gateway rounds (default 3)")
    bench.add_argument(
        "--messages", type=int, help="messages of the memory run (default 1000000; 0 skips)"
    )
    bench.add_argument(
        "--e2e-messages", type=int, help="messages of the end-to-end run (default 30000)"
    )
    bench.add_argument(
        "--subscribers", type=int, help="idle WebSocket subscribers (default 10000)"
    )
    bench.add_argument("--users", type=int, help="sandbox users per service (default 16)")
    bench.add_argument("--tool", choices=["auto", "wrk", "asyncio"], help="load generator")
    bench.add_argument("--server-cpu", type=int, help="core of the servers (default: last)")
    bench.add_argument("--client-cpu", type=int, help="core of the load generator")
    bench.add_argument(
        "--compare-with",
        metavar="CHECKOUT",
        help="also run the gateway of another checkout in the same rounds (before/after)",
    )
    bench.add_argument(
        "--no-standalone",
        action="store_true",
        help="skip the standalone topology (gateway with platforms = http + sandbox process)",
    )
    bench.add_argument(
        "--postgres",
        metavar="URL",
        help="also run one PostgreSQL replica (a schema of its own on this server, dropped after)",
    )
    bench.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    bench.add_argument("--out", help="also write the JSON report to this file")
    bench.set_defaults(run=cmd_bench)
