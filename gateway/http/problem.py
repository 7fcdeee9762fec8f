"""Rendering of RFC 9457 problem details."""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

PROBLEM_CONTENT_TYPE = "application/problem+json"

_encoder = msgspec.json.Encoder()


def problem_response(
    status: int,
    type_: str,
    title: str,
    detail: str,
    *,
    request_id: str | None = None,
    field: str | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> web.Response:
    """A problem+json response; `field` names the part of the input at fault."""
    body: dict[str, Any] = {"type": type_, "title": title, "status": status, "detail": detail}
    if field is not None:
        body["field"] = field
    if request_id is not None:
        body["instance"] = f"urn:request:{request_id}"
        body["request_id"] = request_id
    if extra:
        body.update({k: v for k, v in extra.items() if k not in body})
    return web.Response(
        status=status,
        body=_encoder.encode(body),
        content_type=PROBLEM_CONTENT_TYPE,
        headers=headers,
    )
