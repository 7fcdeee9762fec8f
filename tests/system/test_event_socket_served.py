"""An event WebSocket on `dma-gateway serve` as a real process (uvloop): served once upgraded
apart from aiohttp's request handling, and closed with 1001 at SIGTERM."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from aiohttp import WSCloseCode, WSMsgType

from gateway.bench.provision import onboard
from tests.system.test_serve import served  # noqa: F401 (a fixture)


async def test_an_event_socket_on_the_served_gateway(served: Any) -> None:  # noqa: F811
    proc, port, cwd = served
    base = f"http://127.0.0.1:{port}"
    admin = (cwd / "var" / "admin-token").read_text().strip()
    async with aiohttp.ClientSession() as session:
        provider = await onboard(session, base, admin)
        async with session.ws_connect(f"{base}/v1/events/ws", headers=provider.headers) as ws:
            await ws.send_str("not json")
            assert "error" in await ws.receive_json(timeout=5)
            await ws.send_json({"ack": "7"})  # past the newest event
            answer = await ws.receive_json(timeout=5)
            assert answer["type"] == "/problems/invalid-cursor"
            await ws.ping()  # answered, or the socket would be gone
            proc.terminate()
            msg = await ws.receive(timeout=10)
            assert msg.type == WSMsgType.CLOSE
            assert msg.data == WSCloseCode.GOING_AWAY
    await asyncio.to_thread(proc.communicate, timeout=20)
    assert proc.returncode == 0
