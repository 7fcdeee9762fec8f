"""Encrypted media (DESIGN §4.5): opaque ciphertext bound to one conversation, then expired.

The key, nonce and hash travel inside the Olm message (MIMI ExternalPart), never here: the
gateway stores bytes it cannot open and hands them only to the two sides of the conversation.
Media for a group (`to` a group URI, DESIGN §4.10) is sized by the hub service's limits and
handed to the provider of any current member, and to platform members.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Protocol

import msgspec
import structlog

from gateway.clock import now_ms
from gateway.errors import (
    MediaQuotaExceeded,
    NotFound,
    PayloadTooLarge,
    UnknownRecipient,
    ValidationFailed,
)
from gateway.store import Reader, Store, Tx
from gateway.store import keys as key_store
from gateway.store import media as media_store
from gateway.store.blobs import BlobStore, BlobTooLarge
from gateway.store.media import MediaRecord
from gateway.translate.groups import parse_group_uri
from gateway.translate.limits import LIMITS
from gateway.uris import parse_user_uri

log = structlog.get_logger(__name__)

# AES-256-GCM appends a 16-byte tag: the service's limit is on the file, we store ciphertext.
GCM_OVERHEAD = 16
DAY_MS = 24 * 3600 * 1000

# May provider `client_id` reach `user_uri`? (the reach policy: approved service, consent,
# tenancy): allows(user_uri, client_id).
ConsentCheck = Callable[[str, str], Awaitable[bool]]
# Does group `group` have a current member of provider `client_id`? (group, client_id)
GroupAccess = Callable[[str, str], Awaitable[bool]]
# Is `user` a current member of `group`? (group, user)
GroupMember = Callable[[str, str], Awaitable[bool]]


class MediaInfo(msgspec.Struct, frozen=True, kw_only=True):
    """The answer of `POST /v1/media`."""

    id: str
    size: int
    sha256: str


class MediaAudit(Protocol):
    """Appends the upload's audit record inside the write unit that stores it."""

    async def __call__(self, tx: Tx, subjects: Iterable[str], sha256: str, size: int) -> None: ...


def _not_found() -> NotFound:
    # One body for missing, expired and not yours: an id reveals nothing to outsiders.
    return NotFound("No such media.")


class MediaService:
    """Upload, access control, download and expiry of encrypted media."""

    def __init__(
        self,
        store: Store,
        blobs: BlobStore,
        *,
        expiry_days: int,
        max_bytes: int,
        enabled_services: Iterable[str],
        reach: ConsentCheck,
        group_access: GroupAccess,
        group_member: GroupMember,
        quota_bytes: int | None = None,
    ) -> None:
        self.store = store
        self.blobs = blobs
        self.expiry_ms = expiry_days * DAY_MS
        self.max_bytes = max_bytes
        self.services = frozenset(enabled_services)
        self.reach = reach
        self.group_access = group_access
        self.group_member = group_member
        # Bytes of unexpired media one provider may hold (None: no quota).
        self.quota_bytes = quota_bytes
        # Committing a blob and removing an unreferenced one must not interleave.
        self._placing = asyncio.Lock()

    def limit_for(self, peer: str, kind: str | None) -> int:
        """The largest upload for `peer`: its service's limit for `kind`, or its largest; for a
        group, its hub service's."""
        hub = _hub_of(peer)
        uri = parse_user_uri(peer)
        if uri is None and hub is None:
            raise ValidationFailed(
                "Not a user URI (mimi://<service>/u/<id>) or group URI (mimi://<service>/g/<id>).",
                field="to",
            )
        if uri is not None and not uri.is_platform:
            if kind is not None:
                raise ValidationFailed("`kind` applies to platform peers only.", field="kind")
            return self.max_bytes
        service = hub if uri is None else uri.authority
        assert service is not None
        if service not in self.services:
            raise UnknownRecipient()
        media = LIMITS[service].media
        if kind is None:
            return max(m.max_bytes for m in media.values()) + GCM_OVERHEAD
        if kind not in media:
            raise ValidationFailed(
                f"Unknown media kind for {service}; one of {', '.join(sorted(media))}.",
                field="kind",
            )
        return media[kind].max_bytes + GCM_OVERHEAD

    async def _check_peer(self, client_id: str, peer: str) -> None:
        # One answer for a peer who does not exist and one the provider may not reach.
        if _hub_of(peer) is not None:
            if not await self.group_access(peer, client_id):
                raise UnknownRecipient()
            return
        if not await self.reach(peer, client_id):
            raise UnknownRecipient()
        uri = parse_user_uri(peer)
        assert uri is not None
        if not uri.is_platform and await key_store.identity(self.store, peer) is None:
            raise UnknownRecipient()

    async def upload(
        self,
        client_id: str,
        peer: str,
        chunks: AsyncIterable[bytes],
        *,
        kind: str | None = None,
        declared_size: int | None = None,
        audit: MediaAudit | None = None,
    ) -> MediaInfo:
        """Store a provider's ciphertext for its conversation with `peer`."""
        limit = self.limit_for(peer, kind)
        await self._check_peer(client_id, peer)
        if declared_size is not None:
            await self._check_quota(self.store, client_id, declared_size)
        return await self._store(client_id, peer, chunks, limit, declared_size, audit)

    async def _check_quota(self, db: Reader, client_id: str, size: int) -> None:
        """Refuse an upload that would take the provider's stored media past its quota."""
        if self.quota_bytes is None:
            return
        used = await media_store.bytes_stored_by(db, client_id, now=now_ms())
        if used + size > self.quota_bytes:
            raise MediaQuotaExceeded(
                f"This upload would exceed your media storage quota of {self.quota_bytes} "
                f"bytes ({used} in use); media expires after its retention period.",
                field="body",
            )

    async def _store(
        self,
        uploader: str,
        peer: str,
        chunks: AsyncIterable[bytes],
        limit: int,
        declared_size: int | None,
        audit: MediaAudit | None,
    ) -> MediaInfo:
        too_large = PayloadTooLarge(
            f"The media is larger than the limit of {limit} bytes for this peer.", field="body"
        )
        if declared_size is not None and declared_size > limit:
            raise too_large  # refused before reading a byte
        try:
            staged = await self.blobs.stage(chunks, max_bytes=limit)
        except BlobTooLarge:
            raise too_large from None
        if staged.size == 0:
            await self.blobs.discard(staged)
            raise ValidationFailed("The media is empty.", field="body")
        media_id = secrets.token_urlsafe(24)
        now = now_ms()

        record = MediaRecord(
            id=media_id,
            sha256=staged.sha256,
            size=staged.size,
            uploader=uploader,
            peer=peer,
            created_at=now,
            expires_at=now + self.expiry_ms,
        )

        async def unit(tx: Tx) -> None:
            # Checked again in the unit that stores the record: uploads that ran at once
            # count each other.
            await self._check_quota(tx, uploader, staged.size)
            await media_store.add_media(tx, record)
            if audit is not None:
                await audit(tx, [peer], staged.sha256, staged.size)

        async with self._placing:
            await self.blobs.commit(staged)
            try:
                await self.store.write("media_upload", unit)
            except MediaQuotaExceeded:
                if not await media_store.blob_referenced(self.store, staged.sha256):
                    await self.blobs.delete(staged.sha256)
                raise
        log.info("media_stored", size=staged.size)
        return MediaInfo(id=media_id, size=staged.size, sha256=staged.sha256)

    async def _record(self, media_id: str) -> tuple[str, int, str, str]:
        record = await media_store.live_media(self.store, media_id, now=now_ms())
        if record is None:
            raise _not_found()
        return record.sha256, record.size, record.uploader, record.peer

    async def open(self, client_id: str, media_id: str) -> tuple[Path, int, str]:
        """The blob file, size and digest, for the uploader's or the peer's provider only."""
        sha256, size, uploader, peer = await self._record(media_id)
        uri = parse_user_uri(peer)
        if _hub_of(peer) is not None:
            peer_side = await self.group_access(peer, client_id)
        else:
            peer_side = uri is not None and not uri.is_platform and uri.authority == client_id
        path = self.blobs.path(sha256)
        if not (uploader == client_id or peer_side) or path is None:
            raise _not_found()
        return path, size, sha256

    async def upload_for_platform(self, sender: str, peer: str, data: bytes) -> MediaInfo:
        """Store ciphertext a platform user sends to a third-party user (the sandbox's side)."""
        uri = parse_user_uri(sender)
        if uri is None or not uri.is_platform:
            raise ValueError("the sender must be a platform user")

        async def one() -> AsyncIterable[bytes]:
            yield data

        return await self._store(uri.authority, peer, one(), self.max_bytes, len(data), None)

    async def read_for_platform(self, user: str, media_id: str) -> bytes | None:
        """The ciphertext for a platform user on either side of the conversation, or None."""
        uri = parse_user_uri(user)
        try:
            sha256, _, uploader, peer = await self._record(media_id)
        except NotFound:
            return None
        if uri is None or not uri.is_platform:
            return None
        if _hub_of(peer) is not None:
            if not await self.group_member(peer, user):
                return None
        elif peer != user and uploader != uri.authority:
            return None
        return await self.blobs.read(sha256)

    async def remove_expired(self) -> int:
        """Delete expired records and the blobs no record refers to any more."""
        now = now_ms()

        async def unit(tx: Tx) -> list[str]:
            return await media_store.remove_expired_media(tx, now=now)

        async with self._placing:
            digests = await self.store.write("media_expire", unit)
            for sha256 in digests:
                if not await media_store.blob_referenced(self.store, sha256):
                    await self.blobs.delete(sha256)
        if digests:
            log.info("media_expired", blobs=len(digests))
        return len(digests)


def _hub_of(uri: str) -> str | None:
    """The hub service of a group URI `mimi://<service>/g/<id>`, else None."""
    parsed = parse_group_uri(uri)
    return None if parsed is None else parsed[0]
