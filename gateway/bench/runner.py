"""`dma-gateway bench`: the gateway against a bare aiohttp baseline, in one run, same client.

Both servers run pinned to one core, the load generator on another. Rounds alternate baseline
and gateway (each gateway round starts only once its outbox has drained, so the baseline never
shares its core with leftover delivery work); the report gives per-round figures and medians.
Topologies, each a target in the same rounds: `gateway` (the embedded sandbox platforms in the
gateway's process), `standalone` (the gateway alone on its core with `platforms = "http"`,
talking to a `dma-gateway sandbox serve` process on the load generator's core: the production
topology in miniature), `postgres` (the embedded topology on one PostgreSQL replica, with
--postgres) and `compare` (another checkout, --compare-with).
Then: end to end per target (accepted -> delivered to sandbox users), resident memory after
--messages messages, and with idle WebSocket subscribers.
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
from gateway.store.postgres import create_scratch_schema, drop_scratch_schema

# Provider limits high enough that the load generator, not the limiter, sets the pace; the
# limiter still runs on every request.
_UNLIMITED = "1000000"
BENCH_ENV = {
    "GATEWAY_LOG_FORMAT": "json",
    "GATEWAY_AUTH__ACCESS_TOKEN_TTL_S": "3600",
    "GATEWAY_RELAY__MAX_PROVIDER_BACKLOG": "100000000",
    "GATEWAY_RELAY__MAX_OUTBOX": "100000000",
    # The idle-subscriber figure opens thousands of sockets as one provider.
    "GATEWAY_RELAY__MAX_SOCKETS_PER_PROVIDER": "100000000",
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
    # Another checkout whose gateway runs beside this one, in the same rounds (before/after).
    compare_with: str | None = None
    # Beside the embedded topology (always run, the reference of the targets).
    standalone: bool = True
    # A PostgreSQL server URL: one replica on a schema of its own (made and dropped here).
    postgres: str | None = None

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


class Target:
    """A gateway under test: its process, its onboarded provider and message bodies."""

    def __init__(self, name: str, server: Server, provider: Provider, bodies: list[str]):
        self.name = name
        self.server = server
        self.provider = provider
        self.bodies = bodies


def _median(rounds: list[dict[str, Any]], name: str) -> dict[str, Any]:
    def med(side: str, key: str) -> float:
        return statistics.median(r[side][key] for r in rounds)

    return {
        "accepted_per_s": med(name, "accepted_per_s"),
        "p50_ms": med(name, "p50_ms"),
        "p99_ms": med(name, "p99_ms"),
        "errors": sum(r[name]["errors"] for r in rounds),
        "ratio": statistics.median(r[f"{name}_ratio"] for r in rounds),
    }


async def _rounds(
    options: Options,
    session: aiohttp.ClientSession,
    baseline: Server,
    targets: list[Target],
    client_cpu: int | None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rounds = []
    for n in range(1, options.rounds + 1):
        for target in targets:
            await observe.settle(session, target.server.url)
        bodies = targets[0].bodies
        base = await _drive(options, f"{baseline.url}/v1/messages", bodies, {}, client_cpu)
        entry: dict[str, Any] = {"round": n, "baseline": msgspec.to_builtins(base)}
        for target in targets:
            await target.provider.refresh_token(session)
            url = f"{target.server.url}/v1/messages"
            result = await _drive(options, url, target.bodies, target.provider.headers, client_cpu)
            entry[target.name] = msgspec.to_builtins(result)
            entry[f"{target.name}_ratio"] = _ratio(result.accepted_per_s, base.rps)
            entry[f"{target.name}_rss_mb"] = round(target.server.rss_mb(), 1)
            # The next target starts on an idle core too.
            await observe.settle(session, target.server.url)
        entry["ratio"] = entry["gateway_ratio"]
        rounds.append(entry)
    gw = _median(rounds, "gateway")
    median: dict[str, Any] = {
        "baseline_rps": statistics.median(r["baseline"]["rps"] for r in rounds),
        "baseline_p99_ms": statistics.median(r["baseline"]["p99_ms"] for r in rounds),
        "gateway_accepted_per_s": gw["accepted_per_s"],
        "gateway_p50_ms": gw["p50_ms"],
        "gateway_p99_ms": gw["p99_ms"],
        "gateway_errors": gw["errors"],
        "ratio": gw["ratio"],
    }
    for target in targets[1:]:
        median[target.name] = _median(rounds, target.name)
    return rounds, median


async def _end_to_end(
    options: Options, session: aiohttp.ClientSession, gateway: Server, provider: Provider
) -> dict[str, Any]:
    """Fresh Olm ciphertext per WhatsApp message (each decrypts on the platform side, each
    made before the clock starts) and Instagram plaintext; delivered/s from the first send to
    the last delivery."""
    conversations = Conversations(provider, uuid.uuid4().hex[:12])
    await conversations.open(session, options.connections)
    # Every ciphertext is made before the clock starts: the client is not the limit.
    conversations.prepare(options.connections, -(-options.e2e_messages // options.connections))
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
    admin_token: str,
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
    # Idle means nothing to send: the sending provider has a backlog of delivery statuses that
    # every one of its sockets would be handed, so a provider with an empty queue listens.
    listener = await onboard(session, gateway.url, admin_token)
    ws = await _subscribers(options, gateway, listener)
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
    standalone = median.get("standalone")
    if standalone:
        targets["standalone_ratio_at_least_0.5"] = standalone["ratio"] >= 0.5
        targets["standalone_p99_at_most_20ms"] = standalone["p99_ms"] <= 20.0
        e2e_standalone = report.get("end_to_end_standalone")
        if e2e_standalone:
            targets["standalone_end_to_end_at_least_3000_per_s"] = (
                e2e_standalone["delivered_per_s"] >= 3000
            )
    postgres = median.get("postgres")
    if postgres and postgres["accepted_per_s"]:
        # Cost per message is 1 / accepted per second on the same core.
        cost = median["gateway_accepted_per_s"] / postgres["accepted_per_s"]
        targets["postgres_cost_at_most_1.5x_sqlite"] = cost <= 1.5
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


def _start_gateway(
    name: str,
    data: Path,
    admin_token: str,
    cpu: int | None,
    code: Path | None,
    env: dict[str, str] | None = None,
    port: int | None = None,
) -> Server:
    port = port or free_port()
    full_env = {
        **BENCH_ENV,
        "GATEWAY_DATA_DIR": str(data / name),
        "GATEWAY_PORT": str(port),
        "GATEWAY_ADMIN_TOKEN": admin_token,
        **(env or {}),
    }
    extra = {} if code is None else {"code": code}
    return Server(
        name, ["-m", "gateway", "serve"],
        port=port, cpu=cpu, log_path=data / f"{name}.log", env=full_env, **extra,
    )  # fmt: skip


def _start_standalone(
    data: Path, admin_token: str, server_cpu: int | None, client_cpu: int | None
) -> tuple[Server, Server]:
    """The gateway on the server core with `platforms = "http"`, and its sandbox platforms as
    a process of their own on the load generator's core."""
    gateway_port, sandbox_port = free_port(), free_port()
    secret = secrets.token_urlsafe(24)
    sandbox = Server(
        "sandbox", ["-m", "gateway", "sandbox", "serve", "--port", str(sandbox_port),
                    "--gateway", f"http://127.0.0.1:{gateway_port}",
                    "--data-dir", str(data / "sandbox")],
        port=sandbox_port, cpu=client_cpu, log_path=data / "sandbox.log",
        env={**BENCH_ENV, "GATEWAY_ADMIN_TOKEN": admin_token,
             "GATEWAY_HTTP_PLATFORM__APP_SECRET": secret},
    )  # fmt: skip
    gateway = _start_gateway(
        "standalone", data, admin_token, server_cpu, None,
        env={"GATEWAY_PLATFORMS": "http",
             "GATEWAY_HTTP_PLATFORM__SANDBOX_URL": f"http://127.0.0.1:{sandbox_port}",
             "GATEWAY_HTTP_PLATFORM__APP_SECRET": secret},
        port=gateway_port,
    )  # fmt: skip
    return gateway, sandbox


async def _target(
    options: Options,
    session: aiohttp.ClientSession,
    name: str,
    server: Server,
    admin: str,
    sandbox: Server | None = None,
) -> Target:
    await server.wait_ready("/readyz")
    provider = await onboard(session, server.url, admin)
    if sandbox is not None:
        await sandbox.wait_ready("/readyz")
        provider.sandbox_url = sandbox.url
    await create_users(session, provider, admin, options.users)
    return Target(name, server, provider, await templates(session, provider))


async def run(options: Options) -> dict[str, Any]:
    """Run the whole benchmark; the report as a JSON-ready dict."""
    server_cpu, client_cpu = cpus(options)
    use_wrk = options.tool == "wrk" or (options.tool == "auto" and wrk.available() is not None)
    pin_self(client_cpu)
    admin_token = secrets.token_urlsafe(24)
    schema_url = (
        await create_scratch_schema(options.postgres, "bench") if options.postgres else None
    )
    with tempfile.TemporaryDirectory(prefix="dma-bench-") as tmp:
        data = Path(tmp)
        base_port = free_port()
        baseline = Server(
            "baseline", ["-m", "gateway.bench.baseline", str(base_port)],
            port=base_port, cpu=server_cpu, log_path=data / "baseline.log",
        )  # fmt: skip
        servers = [_start_gateway("gateway", data, admin_token, server_cpu, None)]
        sandboxes: dict[str, Server] = {}
        if options.standalone:
            standalone, sandboxes["standalone"] = _start_standalone(
                data, admin_token, server_cpu, client_cpu
            )
            servers.append(standalone)
        if schema_url is not None:
            env = {"GATEWAY_DATABASE_URL": schema_url, "GATEWAY_STORAGE__POOL_SIZE": "8"}
            servers.append(_start_gateway("postgres", data, admin_token, server_cpu, None, env))
        if options.compare_with:
            code = Path(options.compare_with).absolute()  # noqa: ASYNC240 (no I/O)
            servers.append(_start_gateway("compare", data, admin_token, server_cpu, code))
        gateway = servers[0]
        try:
            await baseline.wait_ready()
            async with aiohttp.ClientSession() as session:
                targets = [
                    await _target(options, session, s.name, s, admin_token, sandboxes.get(s.name))
                    for s in servers
                ]
                rounds, median = await _rounds(options, session, baseline, targets, client_cpu)
                report: dict[str, Any] = {
                    "machine": _machine(server_cpu, client_cpu, "wrk" if use_wrk else "asyncio"),
                    "options": msgspec.to_builtins(options),
                    "rounds": rounds,
                    "median": median,
                }
                if options.e2e_messages:
                    for target in targets:
                        key = (
                            "end_to_end"
                            if target.name == "gateway"
                            else f"end_to_end_{target.name}"
                        )
                        report[key] = await _end_to_end(
                            options, session, target.server, target.provider
                        )
                if options.messages:
                    report["memory"] = await _memory(
                        options,
                        session,
                        gateway,
                        targets[0].provider,
                        targets[0].bodies,
                        admin_token,
                    )
                report["gateway_rss_mb"] = round(gateway.rss_mb(), 1)
        finally:
            baseline.stop()
            exit_codes = [s.stop() for s in servers]
            for sandbox in sandboxes.values():
                sandbox.stop()
            if schema_url is not None and options.postgres:
                await drop_scratch_schema(options.postgres, schema_url)
        report["gateway_exit_code"] = exit_codes[0]
        report["exit_codes"] = {s.name: code for s, code in zip(servers, exit_codes, strict=True)}
        report["targets"] = _targets(report)
        report["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
        return report
