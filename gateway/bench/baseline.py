"""The bare baseline: an aiohttp app that decodes the JSON body and answers 202, nothing else.

Run as `python -m gateway.bench.baseline PORT`; it uses uvloop when installed, as `serve` does,
so the two differ only by what the gateway does per request.
"""

from __future__ import annotations

import asyncio
import sys

import msgspec
from aiohttp import web

_ACCEPTED = b'{"status":"accepted"}'


async def accept(request: web.Request) -> web.Response:
    """Decode the body (a malformed one is a 400) and answer 202."""
    try:
        msgspec.json.decode(await request.read())
    except msgspec.DecodeError:
        return web.Response(status=400)
    return web.Response(status=202, body=_ACCEPTED, content_type="application/json")


async def healthz(request: web.Request) -> web.Response:
    """Process up."""
    return web.Response(text="ok")


def create_baseline() -> web.Application:
    """The baseline app: POST /v1/messages and GET /healthz."""
    app = web.Application()
    app.router.add_post("/v1/messages", accept)
    app.router.add_get("/healthz", healthz)
    return app


def main(argv: list[str]) -> int:
    """Serve the baseline on 127.0.0.1:PORT until SIGINT/SIGTERM."""
    port = int(argv[0])
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    web.run_app(create_baseline(), host="127.0.0.1", port=port, print=None, access_log=None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
