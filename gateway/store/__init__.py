"""Storage layer: the Store protocol and its backends, chosen by URL scheme."""

from __future__ import annotations

from gateway.store.base import Row, Store, StoreError, Tx, WriteUnit

__all__ = ["Row", "Store", "StoreError", "Tx", "WriteUnit", "open_store"]


async def open_store(url: str, *, group_commit_max: int = 256, readonly: bool = False) -> Store:
    """Open the store named by `url` (`sqlite:///path` or `postgresql://...`)."""
    if url.startswith("sqlite:///"):
        from gateway.store.sqlite import SqliteStore

        return await SqliteStore.open(
            url[len("sqlite:///") :], group_commit_max=group_commit_max, readonly=readonly
        )
    if url.startswith(("postgresql://", "postgres://")):
        raise StoreError("the PostgreSQL backend is not available in this version")
    raise StoreError(f"unsupported database URL scheme: {url.split(':', 1)[0]}")
