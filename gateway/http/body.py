"""Decoding request bodies into msgspec types, with every failure a GatewayError."""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from gateway.errors import (
    ClientClosed,
    InvalidEncoding,
    MalformedJSON,
    PayloadTooLarge,
    UnsupportedMediaType,
    ValidationFailed,
)
from gateway.http.app_keys import AUDIT, CONFIG

T = TypeVar("T")

# Free-form members (MIMI content, JWKs) accept any JSON; nesting is bounded so that no later
# walk over them (re-encoding, translation) can exhaust the interpreter's recursion limit.
MAX_JSON_DEPTH = 64
# A JSON string as one token (the body already parsed, so every string is terminated) or a bracket.
_JSON_STRUCTURE = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')

_encoder = msgspec.json.Encoder()
_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}


def _decoder(type_: type[T]) -> msgspec.json.Decoder[T]:
    decoder = _decoders.get(type_)
    if decoder is None:
        decoder = _decoders[type_] = msgspec.json.Decoder(type_)
    return decoder


def validation_error(exc: msgspec.ValidationError) -> ValidationFailed:
    """Turn msgspec's message (`... - at `$.a.b``) into a problem naming the field."""
    message = str(exc)
    detail, _, where = message.partition(" - at `")
    field = where.rstrip("`") or "$"
    if detail.startswith(("Object contains unknown field `", "Object missing required field `")):
        name = detail.split("`")[1]
        field = f"{field}.{name}"
    return ValidationFailed(detail, field=field)


def _too_deep(body: bytes) -> bool:
    """True when the (parsed) JSON `body` nests arrays/objects deeper than MAX_JSON_DEPTH."""
    if body.count(b"[") + body.count(b"{") <= MAX_JSON_DEPTH:
        return False
    depth = 0
    for token in _JSON_STRUCTURE.findall(body):
        if token in (b"[", b"{"):
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return True
        elif token in (b"]", b"}"):
            depth -= 1
    return False


def decode_bytes(body: bytes, type_: type[T]) -> T:
    """Decode JSON bytes into `type_`, mapping each failure to its problem."""
    try:
        value = _decoder(type_).decode(body)
    except msgspec.ValidationError as exc:
        raise validation_error(exc) from None
    except msgspec.DecodeError as exc:
        raise MalformedJSON(f"The body is not valid JSON: {exc}") from None
    except UnicodeDecodeError:
        raise InvalidEncoding("The body is not valid UTF-8.") from None
    except RecursionError:
        raise _nested_too_deep() from None
    if _too_deep(body):
        raise _nested_too_deep()
    return value


def _nested_too_deep() -> ValidationFailed:
    detail = f"The body nests arrays or objects more than {MAX_JSON_DEPTH} levels deep."
    return ValidationFailed(detail, field="$")


def require_json(request: web.Request) -> None:
    """Refuse any content type but application/json (or a +json type)."""
    ctype = request.content_type
    if ctype != "application/json" and not (
        ctype.startswith("application/") and ctype.endswith("+json")
    ):
        raise UnsupportedMediaType(
            f"Expected Content-Type application/json, got {ctype or 'none'}.",
            field="Content-Type",
        )


async def read_body(request: web.Request) -> bytes:
    """The whole body, within the application's size limit."""
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[CONFIG].server.max_body_bytes
        raise PayloadTooLarge(
            f"The body is larger than the limit of {limit} bytes.",
            field="body",
        ) from None
    except ConnectionError:  # the client hung up mid-body: its outcome, not a server failure
        raise ClientClosed("The connection closed before the body was complete.") from None
    audit = request.get(AUDIT)
    if audit is not None:
        audit.note_payload(body)  # digest and size only, never the body
    return body


async def decode_json(request: web.Request, type_: type[T]) -> T:
    """Check the content type, read the body within the limit and decode it."""
    require_json(request)
    return decode_bytes(await read_body(request), type_)


def json_response(
    obj: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """Encode `obj` (msgspec Struct, dict, ...) as a JSON response."""
    return web.Response(
        status=status, body=_encoder.encode(obj), content_type="application/json", headers=headers
    )
