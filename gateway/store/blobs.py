"""Blob storage for opaque media: content-addressed by SHA-256, written atomically.

A blob is streamed into a temporary file (hashed on the way, refused past a size limit),
fsynced, then renamed into place under its digest: a reader sees a whole blob or none.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import AsyncIterable
from pathlib import Path
from typing import BinaryIO, Protocol

import msgspec


class BlobTooLarge(Exception):
    """The stream went past the size limit; nothing was stored."""


class StagedBlob(msgspec.Struct, frozen=True, kw_only=True):
    """A fully received blob, not yet visible under its digest."""

    sha256: str
    size: int
    temp: str


class BlobStore(Protocol):
    """Where media ciphertext lives; the gateway never looks inside."""

    async def stage(self, chunks: AsyncIterable[bytes], *, max_bytes: int) -> StagedBlob:
        """Receive a stream into a temporary blob; raise BlobTooLarge past `max_bytes`."""
        ...

    async def commit(self, staged: StagedBlob) -> None:
        """Make a staged blob readable under its digest (idempotent for equal content)."""
        ...

    async def discard(self, staged: StagedBlob) -> None:
        """Drop a staged blob that will not be committed."""
        ...

    def path(self, sha256: str) -> Path | None:
        """The file of a committed blob, or None."""
        ...

    async def read(self, sha256: str) -> bytes | None:
        """A committed blob's bytes, or None."""
        ...

    async def delete(self, sha256: str) -> None:
        """Remove a committed blob (no error when it is already gone)."""
        ...


def _write_all(handle: BinaryIO, chunk: bytes) -> None:
    handle.write(chunk)


def _finish(handle: BinaryIO) -> None:
    handle.flush()
    os.fsync(handle.fileno())
    handle.close()


class FileBlobStore:
    """Blobs as files under one directory: `<root>/<sha[:2]>/<sha>`, temporaries in `tmp/`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / "tmp"

    async def open(self) -> FileBlobStore:
        """Create the directories; drop temporaries a crash left behind."""

        def prepare() -> None:
            self.tmp.mkdir(parents=True, exist_ok=True, mode=0o700)
            for stale in self.tmp.iterdir():
                stale.unlink(missing_ok=True)

        await asyncio.to_thread(prepare)
        return self

    def _final(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    async def stage(self, chunks: AsyncIterable[bytes], *, max_bytes: int) -> StagedBlob:
        temp = self.tmp / uuid.uuid4().hex
        handle = await asyncio.to_thread(temp.open, "wb")
        digest, size = hashlib.sha256(), 0
        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise BlobTooLarge(f"more than {max_bytes} bytes")
                digest.update(chunk)
                await asyncio.to_thread(_write_all, handle, chunk)
            await asyncio.to_thread(_finish, handle)
        except BaseException:
            await asyncio.to_thread(handle.close)
            await asyncio.to_thread(temp.unlink, missing_ok=True)
            raise
        return StagedBlob(sha256=digest.hexdigest(), size=size, temp=str(temp))

    async def commit(self, staged: StagedBlob) -> None:
        final = self._final(staged.sha256)

        def place() -> None:
            final.parent.mkdir(exist_ok=True, mode=0o700)
            os.replace(staged.temp, final)
            # The rename is durable only once the directory entry is.
            fd = os.open(final.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

        await asyncio.to_thread(place)

    async def discard(self, staged: StagedBlob) -> None:
        await asyncio.to_thread(Path(staged.temp).unlink, missing_ok=True)

    def path(self, sha256: str) -> Path | None:
        final = self._final(sha256)
        return final if final.is_file() else None

    async def read(self, sha256: str) -> bytes | None:
        final = self._final(sha256)
        try:
            return await asyncio.to_thread(final.read_bytes)
        except FileNotFoundError:
            return None

    async def delete(self, sha256: str) -> None:
        await asyncio.to_thread(self._final(sha256).unlink, missing_ok=True)
