"""A gateway served on a free port, its loop in a thread, for blocking clients (schemathesis,
the command line, a browser)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from gateway.app import create_app
from gateway.http.server import GatewayRunner
from tests.conftest import make_config


class Served:
    """The gateway on a free port, its loop in a thread (for blocking clients)."""

    def __init__(self, data_dir: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.app = create_app(make_config(data_dir))
        self.runner = GatewayRunner(self.app)
        self.call(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.call(site.start())
        port = self.runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    async def with_client(self, work: Any) -> Any:
        """Run `work(session)` with an HTTP client session on the served gateway's URL."""
        async with aiohttp.ClientSession(base_url=self.base_url) as session:
            return await work(session)

    def close(self) -> None:
        self.call(self.runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()
