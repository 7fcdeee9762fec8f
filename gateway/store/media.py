"""Encrypted media records (DESIGN §4.5): which blob, whose upload, for which peer, until when."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.store.base import Reader, Tx


@dataclass(frozen=True, slots=True)
class MediaRecord:
    """A stored upload: its blob's digest and size, the uploading provider and the peer."""

    id: str
    sha256: str
    size: int
    uploader: str
    peer: str
    created_at: int
    expires_at: int


INSERT = (
    "INSERT INTO media (id, sha256, size, uploader_client_id, peer_uri, created_at, expires_at) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7)"
)
LIVE = (
    "SELECT id, sha256, size, uploader_client_id, peer_uri, created_at, expires_at FROM media "
    "WHERE id = $1 AND expires_at > $2"
)
STORED_BY = (
    "SELECT coalesce(sum(size), 0) FROM media WHERE uploader_client_id = $1 AND expires_at > $2"
)


async def add_media(tx: Tx, record: MediaRecord) -> None:
    """Store a media record."""
    r = record
    await tx.execute(
        INSERT, r.id, r.sha256, r.size, r.uploader, r.peer, r.created_at, r.expires_at
    )


async def live_media(db: Reader, media_id: str, *, now: int) -> MediaRecord | None:
    """The record of `media_id` unless it is missing or expired at `now`."""
    row = await db.fetchrow(LIVE, media_id, now)
    if row is None:
        return None
    return MediaRecord(
        id=row["id"],
        sha256=row["sha256"],
        size=int(row["size"]),
        uploader=row["uploader_client_id"],
        peer=row["peer_uri"],
        created_at=int(row["created_at"]),
        expires_at=int(row["expires_at"]),
    )


async def bytes_stored_by(db: Reader, client_id: str, *, now: int) -> int:
    """The bytes of unexpired media provider `client_id` uploaded (its quota's use)."""
    return int(await db.fetchval(STORED_BY, client_id, now) or 0)


async def remove_expired_media(tx: Tx, *, now: int) -> list[str]:
    """Delete the records expired at `now`; return the digests they referred to."""
    rows = await tx.fetch("SELECT DISTINCT sha256 FROM media WHERE expires_at <= $1", now)
    await tx.execute("DELETE FROM media WHERE expires_at <= $1", now)
    return [r["sha256"] for r in rows]


async def blob_referenced(db: Reader, sha256: str) -> bool:
    """Whether any record still refers to the blob `sha256`."""
    return bool(await db.fetchval("SELECT count(*) FROM media WHERE sha256 = $1", sha256))
