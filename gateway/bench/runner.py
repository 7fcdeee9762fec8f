"""`dma-gateway bench`: the gateway against a bare aiohttp baseline, in one run, same client.

Both servers run pinned to one core, the load generator on another. Rounds alternate baseline
and gateway (each gateway round starts only once its outbox has drained, so the baseline never
shares its core with leftover delivery work); the report gives per-round figures and medians.
Then: end to end (accepted -> delivered to sandbox users), resident memory after --messages
messages, and with idle WebSocket subscribers.
"""

from __future__ import annotations

import asyncio
import os
import platform
import secrets
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from gateway.bench import loadgen, observe, wrk
from gateway.bench.procs import Server, available_cpus, free_port, pin_self
from gateway.bench.provision import Conversations, Provider, create_users, onboard, templates

# Provider limits high enough that the load generator, not the limiter, sets the pace; the
# limiter still runs on every request.
_UNLIMITED = "1000000"
BENCH_ENV = {
    "GATEWAY_LOG_FORMAT": "json",
    "GATEWAY_AUTH__ACCESS_TOKEN_TTL_S": "3600",
    "GATEWAY_RELAY__MAX_PROVIDER_BACKLOG": "100000000",
    "GATEWAY_RELAY__MAX_OUTBOX": "100000000",
    **{
        f"GATEWAY_LIMITS__{cls}__{key}": _UNLIMITED
        for cls in ("MESSAGES", "EVENTS", "KEYS", "DEFAULT", "INTAKE", "TOKEN")
        for key in ("RATE_PER_S", "BURST")
    },
}


class Options(msgspec.Struct, kw_only=True):
    """What `dma-gateway bench` was asked to do."""

    duration_s: float = 10.0
    connections: int = 32
    rounds: int = 3
    messages: int = 1_000_000
    e2e_messages: int = 30_000
    subscribers: int = 10_000
    users: int = 16
    tool: str = "auto"
    server_cpu: int | None = None
    client_cpu: int | None = None
    quick: bool = False

    @classmethod
    def quick_run(cls, **overrides: Any) -> Options:
        """A smoke run of a few seconds: correctness of the harness, not figures."""
        base = {
            "duration_s": 1.0, "connections": 4, "rounds": 1, "messages": 300,
            "e2e_messages": 100, "subscribers": 20, "users": 2, "quick": True,
        }  # fmt: skip
        return cls(**{**base, **overrides})


def cpus(options: Options) -> tuple[int | None, int | None]:
    """(server core, load-generator core): the last two cores; no pinning on one core."""
    have = available_cpus()
    if len(have) < 2:
        return None, None
    server = options.server_cpu if options.server_cpu is not None else have[-1]
    client = options.client_cpu if options.client_cpu is not None else have[-2]
    return server, client


async def _drive(
    options: Options,
    url: str,
    bodies: list[str],
    headers: dict[str, str],
    client_cpu: int | None,
) -> loadgen.LoadResult:
    run = uuid.uuid4().hex[:12]
    if options.tool == "wrk" or (options.tool == "auto" and wrk.available()):
        return await wrk.drive(
            url, bodies, run=run, connections=options.connections,
            duration_s=options.duration_s, headers=headers, cpu=client_cpu,
        )  # fmt: skip
    encoded = [b.encode() for b in bodies]

    def body(connection: int, seq: int) -> bytes:
        template = encoded[(connection + seq) % len(encoded)]
        return template.replace(wrk.ID_SLOT.encode(), f"{run}-{connection}-{seq}".encode())

    return await loadgen.drive(
        url, body, connections=options.connections, duration_s=options.duration_s,
        headers=headers,
    )  # fmt: skip


def _ratio(gateway: float, baseline: float) -> float:
    return round(gateway / baseline, 3) if baseline else 0.0


async def _rounds(
    options: Options,
    session: aiohttp.ClientSession,
    baseline: Server,
    gateway: Server,
    provider: Provider,
    bodies: list[str],
    client_cpu: int | None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rounds = []
    for n in range(1, options.rounds + 1):
        await observe.settle(session, gateway.url)
        base = await _drive(options, f"{baseline.url}/v1/messages", bodies, {}, client_cpu)
        await provider.refresh_token(session)
        gw = await _drive(
            options, f"{gateway.url}/v1/messages", bodies, provider.headers, client_cpu
        )
        rounds.append(
            {
                "round": n,
                "baseline": msgspec.to_builtins(base),
                "gateway": msgspec.to_builtins(gw),
                "ratio": _ratio(gw.accepted_per_s, base.rps),
                "gateway_rss_mb": round(gateway.rss_mb(), 1),
            }
        )
    median = {
        "baseline_rps": statistics.median(r["baseline"]["rps"] for r in rounds),
        "baseline_p99_ms": statistics.median(r["baseline"]["p99_ms"] for r in rounds),
        "gateway_accepted_per_s": statistics.median(
            r["gateway"]["accepted_per_s"] for r in rounds
        ),
        "gateway_p50_ms": statistics.median(r["gateway"]["p50_ms"] for r in rounds),
        "gateway_p99_ms": statistics.median(r["gateway"]["p99_ms"] for r in rounds),
        "gateway_errors": sum(r["gateway"]["errors"] for r in rounds),
        "ratio": statistics.median(r["ratio"] for r in rounds),
    }
    return rounds, median


async def _end_to_end(
    options: Options, session: aiohttp.ClientSession, gateway: Server, provider: Provider
) -> dict[str, Any]:
    """Fresh Olm ciphertext per WhatsApp message (each decrypts on the platform side) and
    Instagram plaintext; delivered/s from the first send to the last delivery."""
    conversations = Conversations(provider, uuid.uuid4().hex[:12])
    await conversations.open(session, options.connections)
    await provider.refresh_token(session)
    before, _ = await observe.settle(session, gateway.url)
    started = time.perf_counter()
    load = await loadgen.drive(
        f"{gateway.url}/v1/messages", conversations.body, connections=options.connections,
        total=options.e2e_messages, headers=provider.headers,
    )  # fmt: skip
    after, finished_at = await observe.settle(session, gateway.url)
    seconds = max(finished_at - started, 1e-9)
    delivered = after.delivered - before.delivered
    return {
        "messages": load.requests,
        "accepted": int(after.accepted - before.accepted),
        "delivered": int(delivered),
        "failed": int(after.failed - before.failed),
        "seconds": round(seconds, 3),
        "accepted_per_s": load.accepted_per_s,
        "delivered_per_s": round(delivered / seconds, 1),
        "p99_ms": load.p99_ms,
    }


async def _memory(
    options: Options,
    session: aiohttp.ClientSession,
    gateway: Server,
    provider: Provider,
    bodies: list[str],
) -> dict[str, Any]:
    """RSS after `messages` messages (accepted and delivered), then with idle subscribers."""
    rss_before = gateway.rss_mb()
    await provider.refresh_token(session)
    run = uuid.uuid4().hex[:12]
    encoded = [b.encode() for b in bodies]

    def body(connection: int, seq: int) -> bytes:
        template = encoded[(connection + seq) % len(encoded)]
        return template.replace(wrk.ID_SLOT.encode(), f"m{run}-{connection}-{seq}".encode())

    started = time.perf_counter()
    load = await loadgen.drive(
        f"{gateway.url}/v1/messages", body, connections=options.connections,
        total=options.messages, headers=provider.headers,
    )  # fmt: skip
    await observe.settle(session, gateway.url, timeout_s=1800)
    rss_after = gateway.rss_mb()
    ws = await _subscribers(options, gateway, provider)
    return {
        "messages": load.requests,
        "accepted": load.accepted,
        "seconds": round(time.perf_counter() - started, 1),
        "rss_mb_before": round(rss_before, 1),
        "rss_mb_after_messages": round(rss_after, 1),
        **ws,
    }


async def _subscribers(options: Options, gateway: Server, provider: Provider) -> dict[str, Any]:
    """Open `subscribers` idle WebSockets on /v1/events/ws; the gateway's RSS with them open."""
    connector = aiohttp.TCPConnector(limit=0)
    opened: list[aiohttp.ClientWebSocketResponse] = []
    async with aiohttp.ClientSession(connector=connector) as ws_session:
        url = f"{gateway.url}/v1/events/ws"

        async def one() -> None:
            opened.append(
                await ws_session.ws_connect(url, headers=provider.headers, heartbeat=None)
            )

        for start in range(0, options.subscribers, 200):
            await asyncio.gather(*(one() for _ in range(min(200, options.subscribers - start))))
        await asyncio.sleep(1.0)
        rss = gateway.rss_mb()
        alive = sum(1 for ws in opened if not ws.closed)
        await asyncio.gather(*(ws.close() for ws in opened))
    return {"subscribers": alive, "rss_mb_with_subscribers": round(rss, 1)}


def _targets(report: dict[str, Any]) -> dict[str, Any]:
    median, e2e, memory = report["median"], report.get("end_to_end"), report.get("memory")
    targets: dict[str, Any] = {
        "ratio_at_least_0.5": median["ratio"] >= 0.5,
        "p99_at_most_20ms": median["gateway_p99_ms"] <= 20.0,
    }
    if e2e:
        targets["end_to_end_at_least_3000_per_s"] = e2e["delivered_per_s"] >= 3000
    if memory:
        targets["rss_after_messages_at_most_150mb"] = memory["rss_mb_after_messages"] <= 150
        targets["rss_with_subscribers_at_most_200mb"] = memory["rss_mb_with_subscribers"] <= 200
    return targets


def _machine(server_cpu: int | None, client_cpu: int | None, tool: str) -> dict[str, Any]:
    try:
        import uvloop  # noqa: F401

        has_uvloop = True
    except ImportError:
        has_uvloop = False
    return {
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "server_cpu": server_cpu,
        "client_cpu": client_cpu,
        "python": platform.python_version(),
        "uvloop": has_uvloop,
        "load_generator": tool,
    }


async def run(options: Options) -> dict[str, Any]:
    """Run the whole benchmark; the report as a JSON-ready dict."""
    server_cpu, client_cpu = cpus(options)
    tool = (
        "wrk"
        if options.tool == "wrk" or (options.tool == "auto" and wrk.available())
        else ("asyncio")
    )
    pin_self(client_cpu)
    admin_token = secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory(prefix="dma-bench-") as tmp:
        data = Path(tmp)
        base_port, gw_port = free_port(), free_port()
        baseline = Server(
            "baseline", ["-m", "gateway.bench.baseline", str(base_port)],
            port=base_port, cpu=server_cpu, log_path=data / "baseline.log",
        )  # fmt: skip
        env = {
            **BENCH_ENV,
            "GATEWAY_DATA_DIR": str(data / "gateway"),
            "GATEWAY_PORT": str(gw_port),
            "GATEWAY_ADMIN_TOKEN": admin_token,
        }
        gateway = Server(
            "gateway", ["-m", "gateway", "serve"],
            port=gw_port, cpu=server_cpu, log_path=data / "gateway.log", env=env,
        )  # fmt: skip
        try:
            await baseline.wait_ready()
            await gateway.wait_ready("/readyz")
            async with aiohttp.ClientSession() as session:
                provider = await onboard(session, gateway.url, admin_token)
                await create_users(session, provider, admin_token, options.users)
                bodies = await templates(session, provider)
                rounds, median = await _rounds(
                    options, session, baseline, gateway, provider, bodies, client_cpu
                )
                report: dict[str, Any] = {
                    "machine": _machine(server_cpu, client_cpu, tool),
                    "options": msgspec.to_builtins(options),
                    "rounds": rounds,
                    "median": median,
                }
                if options.e2e_messages:
                    report["end_to_end"] = await _end_to_end(options, session, gateway, provider)
                if options.messages:
                    report["memory"] = await _memory(options, session, gateway, provider, bodies)
                report["gateway_rss_mb"] = round(gateway.rss_mb(), 1)
        finally:
            baseline.stop()
            exit_code = gateway.stop()
        report["gateway_exit_code"] = exit_code
        report["targets"] = _targets(report)
        report["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
        return report
