"""Reads the compliance report takes from other domains' tables (providers, interop requests).

The audit log's own reads are in `gateway/store/audit.py`.
"""

from __future__ import annotations

from typing import Any

from gateway.store.base import Reader

PROVIDERS_LIVE_SQL = "SELECT request_id, created_at FROM providers"
INTEROP_REQUESTS_SQL = "SELECT * FROM interop_requests"


async def provider_created_by_request(db: Reader) -> dict[str, int]:
    """When the provider approved from each interop request was created, by request id."""
    rows = await db.fetch(PROVIDERS_LIVE_SQL)
    return {str(row["request_id"]): row["created_at"] for row in rows}


async def interop_request_rows(db: Reader) -> list[dict[str, Any]]:
    """Every interop request, all its columns (the report reads those it knows)."""
    return [dict(row) for row in await db.fetch(INTEROP_REQUESTS_SQL)]
