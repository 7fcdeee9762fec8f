"""Where an idle event socket's memory goes: a gateway in this process (uvloop, the served
runner), N idle sockets on /v1/events/ws opened by a client process of its own, and the
tracemalloc difference with them open, grouped by where it was allocated.

    python bench/ws_memory_probe.py [--sockets 1000] [--frames 6] [--top 30] [--collect]

It prints the RSS of this process before and with the sockets, the traced bytes per socket and
the biggest allocation sites (per socket). The client's memory is not in these figures.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import secrets
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path

import aiohttp
from aiohttp import web

from gateway.bench.procs import free_port
from gateway.bench.provision import onboard
from gateway.bench.runner import BENCH_ENV
from gateway.config import load_config

CLIENT = """
import asyncio, sys, aiohttp
async def main(url, token, n):
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn) as s:
        h = {"Authorization": "Bearer " + token}
        opened = []
        for start in range(0, n, 200):
            opened += await asyncio.gather(*(s.ws_connect(url, headers=h, heartbeat=None)
                                             for _ in range(min(200, n - start))))
        print("ready", flush=True)
        sys.stdin.readline()
        print(sum(1 for w in opened if not w.closed), flush=True)
        await asyncio.gather(*(w.close() for w in opened))
asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def main(args: argparse.Namespace) -> None:
    from gateway.app import create_app
    from gateway.http.server import GatewayRunner, settle_gc

    data = Path(tempfile.mkdtemp(prefix="ws-probe-"))
    port = free_port()
    admin = secrets.token_urlsafe(16)
    env = {**os.environ, **BENCH_ENV, "GATEWAY_DATA_DIR": str(data), "GATEWAY_PORT": str(port),
           "GATEWAY_ADMIN_TOKEN": admin, "GATEWAY_LOG_LEVEL": "warning"}  # fmt: skip
    config = load_config(None, env)
    runner = GatewayRunner(create_app(config), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    settle_gc()
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as session:
        provider = await onboard(session, base, admin)
        token = provider.headers["Authorization"].split()[1]
    # One socket first, so that what is allocated once (caches, the first socket's imports)
    # is not counted per socket.
    warm = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CLIENT, f"{base}/v1/events/ws", token, "1",
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip
    assert warm.stdout is not None and warm.stdin is not None
    await warm.stdout.readline()
    await asyncio.sleep(0.5)
    tracemalloc.start(args.frames)
    rss0 = rss_mb()
    before = tracemalloc.take_snapshot()
    client = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CLIENT, f"{base}/v1/events/ws", token, str(args.sockets),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip
    assert client.stdout is not None and client.stdin is not None
    await client.stdout.readline()
    await asyncio.sleep(1.0)
    if args.collect:  # what is left is held by the sockets, not garbage awaiting the collector
        gc.collect()
    after = tracemalloc.take_snapshot()
    rss1 = rss_mb()
    n = args.sockets
    stats = after.compare_to(before, "traceback")
    total = sum(s.size_diff for s in stats)
    print(f"rss {rss0:.1f} -> {rss1:.1f} MB: {(rss1 - rss0) * 1024 / n:.2f} KB a socket")
    print(f"traced {total / n:.0f} B a socket (with tracemalloc's own overhead in the RSS)")
    for stat in stats[: args.top]:
        if stat.size_diff / n < 16:
            break
        print(f"\n{stat.size_diff / n:8.0f} B {stat.count_diff / n:5.1f} blocks")
        for frame in stat.traceback.format()[-2 * args.frames :]:
            print("    " + frame.strip()) if frame.startswith("  File") else None
    client.stdin.write(b"\n")
    await client.stdin.drain()
    print("alive:", (await client.stdout.readline()).decode().strip())
    await client.wait()
    warm.stdin.write(b"\n")
    await warm.stdin.drain()
    await warm.wait()
    await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--collect", action="store_true", help="gc.collect() before measuring")
    import uvloop

    uvloop.install()
    asyncio.run(main(parser.parse_args()))
