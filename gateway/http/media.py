"""Encrypted media routes: `POST /v1/media` (streamed upload) and `GET /v1/media/{id}`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

from aiohttp import web

from gateway.errors import UnsupportedMediaType
from gateway.http.app_keys import AUDIT, AUDIT_LOG, MEDIA
from gateway.http.auth import requires_scope
from gateway.http.body import json_response
from gateway.http.key_routes import require_provider
from gateway.service.media import MediaAudit
from gateway.store import Tx

routes = web.RouteTableDef()

CHUNK = 64 * 1024


def audit_upload(request: web.Request) -> MediaAudit:
    """The upload's audit record, in the transaction that stores the media record."""
    ctx, audit_log = request[AUDIT], request.app[AUDIT_LOG]

    async def hook(tx: Tx, subjects: Iterable[str], sha256: str, size: int) -> None:
        ctx.note_payload_digest(sha256, size)
        await audit_log.append_in(tx, ctx, status=201, subjects=subjects)

    return hook


async def _chunks(request: web.Request) -> AsyncIterator[bytes]:
    async for chunk in request.content.iter_chunked(CHUNK):
        yield chunk


@routes.post("/v1/media")
@requires_scope("media")
async def upload_media(request: web.Request) -> web.Response:
    """Store encrypted bytes for the conversation with `?to=`; the key never comes here."""
    who = require_provider(request, "media")
    assert who.client_id is not None
    if request.content_type != "application/octet-stream":
        raise UnsupportedMediaType(
            "Media is uploaded as raw encrypted bytes (application/octet-stream).",
            field="Content-Type",
        )
    info = await request.app[MEDIA].upload(
        who.client_id,
        request.query.get("to", ""),
        _chunks(request),
        kind=request.query.get("kind") or None,
        declared_size=request.content_length,
        audit=audit_upload(request),
    )
    return json_response(info, status=201)


@routes.get("/v1/media/{id}")
@requires_scope("media")
async def download_media(request: web.Request) -> web.StreamResponse:
    """The ciphertext, for the uploader's and the peer's provider only (404 for anyone else)."""
    who = require_provider(request, "media")
    assert who.client_id is not None
    path, _, sha256 = await request.app[MEDIA].open(who.client_id, request.match_info["id"])
    return web.FileResponse(
        path,
        headers={
            "Content-Type": "application/octet-stream",
            "Cache-Control": "private, max-age=86400, immutable",
            "ETag": f'"{sha256}"',
        },
    )
