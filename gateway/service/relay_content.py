"""Plaintext content for services whose E2EE policy is `optional`: MIMI in, native send out."""

from __future__ import annotations

from typing import Any

from gateway.content import ContentError, content_from_message
from gateway.errors import ContentRejected
from gateway.platforms.native import TranslationError, content_to_send


def native_send_objects(
    service: str, content: dict[str, Any] | None, content_cbor: str | None
) -> list[dict[str, Any]]:
    """Decode MIMI content (JSON or CBOR) and translate it; a 422 names the field at fault."""
    given: dict[str, Any] = (
        {"content": content} if content_cbor is None else {"content_cbor": content_cbor}
    )
    root = "$.content_cbor" if content_cbor is not None else "$.content"
    try:
        mimi = content_from_message(given)
    except ContentError as exc:
        raise ContentRejected(exc.reason, field=_field(root, exc.field)) from None
    try:
        return content_to_send(service, mimi)
    except TranslationError as exc:
        raise ContentRejected(exc.reason, field=_field(root, exc.field)) from None


def _field(root: str, field: str) -> str:
    if not field or field in ("content", "content_cbor"):
        return root
    return f"{root}.{field}"
