"""Storage layer: the Store protocol and its backends, chosen by URL scheme."""

from __future__ import annotations

import sqlite3

import asyncpg

from gateway.store.base import (
    Reader,
    Row,
    Store,
    StoreError,
    Tx,
    WriteUnit,
    is_lock_not_available,
    redact_url,
)

__all__ = [
    "INTEGRITY_ERRORS",
    "Reader",
    "Row",
    "Store",
    "StoreError",
    "Tx",
    "WriteUnit",
    "is_lock_not_available",
    "open_store",
    "redact_url",
]

# What a constraint violation (unique, foreign key, not null, check) raises on either backend:
# `except INTEGRITY_ERRORS:` around `store.write(...)`. Inside a unit prefer ON CONFLICT: on
# PostgreSQL a failed statement aborts the unit's transaction.
INTEGRITY_ERRORS: tuple[type[Exception], ...] = (
    sqlite3.IntegrityError,
    asyncpg.IntegrityConstraintViolationError,
)


async def open_store(
    url: str,
    *,
    group_commit_max: int = 256,
    readonly: bool = False,
    pool_size: int = 10,
    statement_timeout_s: float = 30.0,
) -> Store:
    """Open the store named by `url` (`sqlite:///path` or `postgresql://...`).

    `pool_size` (reads; writes have one connection of their own) and `statement_timeout_s`
    apply to PostgreSQL only.
    """
    if url.startswith("sqlite:///"):
        from gateway.store.sqlite import SqliteStore

        return await SqliteStore.open(
            url[len("sqlite:///") :], group_commit_max=group_commit_max, readonly=readonly
        )
    if url.startswith(("postgresql://", "postgres://")):
        from gateway.store.postgres import PostgresStore

        return await PostgresStore.open(
            url,
            pool_size=pool_size,
            statement_timeout_s=statement_timeout_s,
            group_commit_max=group_commit_max,
            readonly=readonly,
        )
    raise StoreError(f"unsupported database URL scheme: {url.split(':', 1)[0]}")
