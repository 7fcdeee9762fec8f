"""Shutdown milestones in the log: signal received, requests drained, resources closed.

aiohttp's order on SIGTERM: stop listening, `on_shutdown`, wait for requests in flight (at most
`server.shutdown_timeout_s`), then `on_cleanup`, whose first handler exits the cleanup contexts
in reverse order (workers before the store). A slow step shows in these lines' `elapsed_s`.
"""

from __future__ import annotations

import time

import structlog
from aiohttp import web
from prometheus_client import REGISTRY

log = structlog.get_logger("gateway.lifecycle")


def log_shutdown(app: web.Application) -> None:
    """Log the milestones of `app`'s shutdown (call once, in create_app)."""
    started: list[float] = []  # the app's state is frozen once it runs: keep ours here

    def elapsed() -> float:
        return round(time.monotonic() - (started[0] if started else time.monotonic()), 3)

    async def on_signal(app: web.Application) -> None:
        started.append(time.monotonic())
        in_flight = REGISTRY.get_sample_value("gateway_http_requests_in_flight") or 0
        log.info("shutdown_started", requests_in_flight=int(in_flight))

    async def drained(app: web.Application) -> None:
        log.info("shutdown_requests_drained", elapsed_s=elapsed())

    async def done(app: web.Application) -> None:
        log.info("shutdown_complete", elapsed_s=elapsed())

    app.on_shutdown.append(on_signal)
    # Before the cleanup contexts (registered at construction) and after them.
    app.on_cleanup.insert(0, drained)
    app.on_cleanup.append(done)
