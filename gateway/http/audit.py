"""The audit middleware (one record per request, whatever its outcome) and its resources."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec
import structlog
from aiohttp import web

from gateway import metrics
from gateway.errors import ValidationFailed
from gateway.http.app_keys import AUDIT, AUDIT_LOG, AUDIT_SIGNER, CONFIG, STORE
from gateway.http.guards import principal, require_admin
from gateway.http.middlewares import REQUEST_ID, Handler, route_template
from gateway.http.problem import PROBLEM_CONTENT_TYPE
from gateway.service.audit.actions import UNMATCHED, action_for
from gateway.service.audit.chain import Checkpointer
from gateway.service.audit.checkpoints import load_signer
from gateway.service.audit.export import export_lines, parse_instant
from gateway.service.audit.log import AuditContext, AuditLog
from gateway.service.audit.pseudonym import load_pseudonymizer
from gateway.service.principal import Principal
from gateway.store import StoreError

log = structlog.get_logger("gateway.audit")

_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# HTTP's "client closed request" (nginx): the client went away before the answer.
CLIENT_CLOSED = 499


class _ProblemType(msgspec.Struct):
    type: str = "about:blank"


_problem_decoder = msgspec.json.Decoder(_ProblemType)


async def audit_ctx(app: web.Application) -> AsyncIterator[None]:
    """Keys, the audit log and the checkpoint worker; a last checkpoint at shutdown."""
    config = app[CONFIG]
    # One live writer per chain: a second replica with the same chain_id would fork it.
    try:
        await app[STORE].hold_exclusive(f"audit-chain:{config.audit.chain_id}")
    except StoreError as exc:
        raise StoreError(f"{exc}: give each replica its own [audit] chain_id") from None
    signer = await asyncio.to_thread(load_signer, config.data_path)
    assert signer is not None
    pseudonymize = await asyncio.to_thread(load_pseudonymizer, config.data_path)
    checkpointer = Checkpointer(
        app[STORE],
        signer,
        config.audit.chain_id,
        every=config.audit.checkpoint_every,
        interval_s=config.audit.checkpoint_interval_s,
    )
    app[AUDIT_SIGNER] = signer
    app[AUDIT_LOG] = AuditLog(
        app[STORE],
        chain_id=config.audit.chain_id,
        pseudonymize=pseudonymize,
        on_append=checkpointer.appended,
    )
    checkpointer.start()
    yield
    await app[AUDIT_LOG].drain()
    await checkpointer.stop()


async def _template(request: web.Request) -> str:
    route = route_template(request)
    if route == "unmatched" and isinstance(
        request.match_info.http_exception, web.HTTPMethodNotAllowed
    ):
        # A 405 matched a path, just not the method: name that route, not "unmatched".
        for resource in request.app.router.resources():
            match, allowed = await resource.resolve(request)
            if match is None and allowed:
                return resource.canonical
    return route


def _problem_type(response: web.StreamResponse) -> str | None:
    if not isinstance(response, web.Response) or response.content_type != PROBLEM_CONTENT_TYPE:
        return None
    body = response.body
    if not isinstance(body, bytes):
        return None
    try:
        return _problem_decoder.decode(body).type
    except msgspec.DecodeError:
        return None


@web.middleware
async def audit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Give the request an AuditContext; after it, write its record unless a service did."""
    method = request.method if request.method in _KNOWN_METHODS else "OTHER"
    route = await _template(request)
    ctx = AuditContext(
        request_id=request[REQUEST_ID],
        method=method,
        route=route,
        action=action_for(method, route),
        who=lambda: principal(request),
    )
    service = request.match_info.get("service")
    if service in request.app[CONFIG].services:  # only known names: attrs stay bounded
        ctx.attrs["service"] = service
    request[AUDIT] = ctx
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # only non-errors (redirects) get past the problem layer
        await _record(request, ctx, exc.status, None)
        raise
    except asyncio.CancelledError:
        ctx.finish()
        request.app[AUDIT_LOG].record_request_soon(ctx, status=CLIENT_CLOSED)
        raise
    except Exception:
        await _record(request, ctx, 500, None)
        raise
    await _record(request, ctx, response.status, _problem_type(response))
    return response


async def _record(
    request: web.Request, ctx: AuditContext, status: int, problem: str | None
) -> None:
    if ctx.payload_size is None and request.content_length:
        ctx.payload_size = request.content_length  # declared, the body was not read
    # Router misses are named by what went wrong, not by the route they came near.
    action = UNMATCHED.get(status) if request.match_info.http_exception is not None else None
    await _write(request.app, ctx, status, problem, action)


async def _write(
    app: web.Application,
    ctx: AuditContext,
    status: int,
    problem: str | None,
    action: str | None,
) -> None:
    ctx.finish()
    if problem is not None:
        ctx.attrs.setdefault("problem", problem)
    try:
        await app[AUDIT_LOG].record_request(ctx, status=status, action=action)
    except Exception as exc:
        # Requests with effects write their record in the effect's own transaction; this is
        # the record of a request without one, and failing it would not undo the answer.
        metrics.AUDIT_WRITE_FAILURES.inc()
        log.error("audit_write_failed", error=type(exc).__name__)


async def audit_socket_ack(
    app: web.Application, request_id: str, who: Principal, status: int, problem: str | None
) -> None:
    """Record an ack sent on an events WebSocket (opened by request `request_id`, as `who`)
    as `POST /v1/events/ack` is."""
    route = "/v1/events/ack"
    ctx = AuditContext(
        request_id=request_id,
        method="POST",
        route=route,
        action=action_for("POST", route),
        who=lambda: who,
    )
    await _write(app, ctx, status, problem, None)


routes = web.RouteTableDef()


def _instant(request: web.Request, name: str) -> int | None:
    value = request.query.get(name)
    if value is None or value == "":
        return None
    try:
        return parse_instant(value)
    except ValueError as exc:
        raise ValidationFailed(str(exc), field=name) from None


@routes.get("/admin/v1/audit")
async def export_audit(request: web.Request) -> web.StreamResponse:
    """The audit export (records, checkpoints, seal) as streamed JSON lines; admin only."""
    require_admin(request)
    start, end = _instant(request, "from"), _instant(request, "to")
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)
    lines = export_lines(
        request.app[STORE], start_ms=start, end_ms=end, signer=request.app[AUDIT_SIGNER]
    )
    async for chunk in lines:
        await response.write(chunk)
    await response.write_eof()
    return response
