"""Serving the application so that even requests aiohttp cannot parse get a problem+json answer.

aiohttp answers a request its HTTP parser refuses (bad request line, bad header, line too long)
itself, before any middleware, as text/plain echoing the offending bytes; it has no hook for
that answer (aio-libs/aiohttp#3287). `GatewayRunner` serves the app through a request handler
whose `handle_error` renders our problem document instead, with no echo.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
from http import HTTPStatus

import structlog
from aiohttp import web

from gateway.errors import problem_for_status
from gateway.http.problem import problem_response

log = structlog.get_logger("gateway.http")


class ProblemRequestHandler(web.RequestHandler):
    """aiohttp's protocol handler, with its last-resort error page rendered as problem+json."""

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:  # too late for an answer: let aiohttp drop it
            return super().handle_error(request, status, exc, message)
        # The parser's message quotes request bytes: only the kind of failure is logged.
        log.info("request_unparsable", status=status, error=type(exc).__name__)
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Error"
        detail = (
            "The gateway failed to handle this request; it has been logged."
            if status >= 500
            else "The request is not well-formed HTTP/1.1."
        )
        # 414 and 431 (a request line or headers too long) are malformed requests to a client.
        general = problem_for_status(400 if status in (414, 431) else status)
        type_ = general.type if general and status < 500 else "about:blank"
        response = problem_response(status, type_, phrase, detail)
        response.force_close()
        return response


class _ProblemServer(web.Server):
    def __call__(self) -> web.RequestHandler:
        return ProblemRequestHandler(self, loop=self._loop, **self._kwargs)


class GatewayRunner(web.AppRunner):
    """An AppRunner whose connections use ProblemRequestHandler."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        return _ProblemServer(
            server.request_handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            loop=server._loop,
            **server._kwargs,
        )


# Collections of the youngest generation after this many net allocations (CPython: 700).
GC_YOUNG_THRESHOLD = 20_000


def settle_gc() -> None:
    """Once started: move everything allocated so far (modules, the app, its caches) out of
    the collector's sight, and collect the young generation less often. Every full
    collection otherwise walks all of it again; on the request path the collector cost ~6%
    of the CPU (bench/statements_bench.py under gc.callbacks, 29 Nov 2026)."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


def run(app: web.Application, *, sockets: list[socket.socket], shutdown_timeout: float) -> None:
    """Serve `app` until SIGINT or SIGTERM, then shut down gracefully, as web.run_app does:
    the serving task is cancelled (and cleans up) before any other task is."""

    async def serve() -> None:
        runner = GatewayRunner(
            app, handle_signals=True, access_log=None, shutdown_timeout=shutdown_timeout
        )
        await runner.setup()
        try:
            for sock in sockets:
                await web.SockSite(runner, sock).start()
            settle_gc()
            await asyncio.Event().wait()  # until a signal raises GracefulExit
        finally:
            await runner.cleanup()

    with asyncio.Runner() as loop_runner:
        loop = loop_runner.get_loop()
        main = loop.create_task(serve())
        try:
            loop.run_until_complete(main)
        except (web.GracefulExit, KeyboardInterrupt):
            pass
        finally:
            main.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                loop.run_until_complete(main)
