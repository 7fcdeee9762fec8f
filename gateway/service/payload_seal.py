"""Payloads at rest are sealed under epoch keys that are destroyed once their epoch is delivered.

A payload waits in `relay_messages.payload` until delivered, then the column is set to NULL.
That is not enough to make it unreadable: SQLite keeps older copies of the page in its WAL (and
`secure_delete` does not reach them) until a checkpoint overwrites them, and PostgreSQL keeps
dead tuples until vacuum and the text in its own WAL. So every payload is stored only as AES-GCM
ciphertext (the gateway message id as associated data) under the key of its epoch (a fixed
span of `accepted_at`, one minute by default), and the keys live apart from the database: one
file per epoch under `<data_dir>/payload-keys/`. A key kept in a database row would itself land
in the WAL; a key wrapped under a long-lived key-encryption key would make that key the secret
that persists. A key file is created (durably, before the payload's unit commits) the first time
its epoch is used; once no message of its epoch waits in the outbox (and the epoch ended more
than `GRACE_EPOCHS` ago, so no unit started in it can still commit), the file is overwritten
with zeros, fsynced and unlinked, and the key is dropped from memory. From then on, whatever
copies of the ciphertext remain (WAL frames, free pages, dead tuples, backups) cannot be read.

Both backends use the same mechanism; replicas of one PostgreSQL database share the data dir
(as they do for the other secret files), so any of them can open what another sealed, and the
key file is created with link() so that two replicas creating one epoch's key agree on it.
A payload stored before sealing existed (plain JSON, starting with `{`) is read as it is.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
from pathlib import Path

import structlog
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway import secretfiles

log = structlog.get_logger(__name__)

PREFIX = "s1."
EPOCH_MS = 60_000
# Epochs kept past their end: a unit that took its time in an epoch may still commit.
GRACE_EPOCHS = 2


class PayloadUnreadable(Exception):
    """The payload's key is gone (its epoch was destroyed) or the ciphertext was altered."""


class PayloadSealer:
    """Seals and opens stored payloads; destroys the keys of delivered epochs."""

    def __init__(self, root: Path, *, epoch_ms: int = EPOCH_MS) -> None:
        self.root = root
        self.epoch_ms = epoch_ms
        self._keys: dict[int, AESGCM] = {}
        # Epochs below this were swept already: keys are made for the current epoch only, so
        # the folder is listed again only when the boundary moves (not on every call).
        self._swept_below: int | None = None

    def _path(self, epoch: int) -> Path:
        return self.root / f"{epoch}.key"

    def _load(self, epoch: int, *, create: bool) -> AESGCM | None:
        path = self._path(epoch)
        if create:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            key, created = secretfiles.load_or_create(path, lambda: AESGCM.generate_key(256))
            if created:
                _fsync_dir(self.root)  # durable before any payload under it commits
        else:
            try:
                key = path.read_bytes()
            except FileNotFoundError:
                return None
        return AESGCM(key)

    async def _key(self, epoch: int, *, create: bool) -> AESGCM | None:
        aead = self._keys.get(epoch)
        if aead is None:
            aead = await asyncio.to_thread(self._load, epoch, create=create)
            if aead is not None:
                self._keys[epoch] = aead
        return aead

    async def seal(self, message_id: str, payload: bytes, at: int) -> str:
        """`payload` sealed under the key of the epoch of `at` (the message's accepted_at)."""
        epoch = at // self.epoch_ms
        aead = await self._key(epoch, create=True)
        assert aead is not None
        nonce = secrets.token_bytes(12)
        sealed = nonce + aead.encrypt(nonce, payload, message_id.encode())
        return f"{PREFIX}{epoch}.{base64.b64encode(sealed).decode()}"

    async def open(self, message_id: str, stored: str) -> bytes:
        """The payload of a stored value; PayloadUnreadable when its key is gone."""
        if not stored.startswith(PREFIX):
            return stored.encode()  # stored before payloads were sealed
        epoch_text, _, body = stored[len(PREFIX) :].partition(".")
        aead = await self._key(int(epoch_text), create=False)
        if aead is None:
            raise PayloadUnreadable("payload_key_destroyed")
        sealed = base64.b64decode(body)
        try:
            return aead.decrypt(sealed[:12], sealed[12:], message_id.encode())
        except InvalidTag:
            raise PayloadUnreadable("payload_altered") from None

    async def destroy_delivered(self, oldest_pending: int | None, now: int) -> int:
        """Destroy the keys of epochs with nothing left to deliver; return how many.

        `oldest_pending` is the accepted_at of the oldest message still in the outbox (None
        when it is empty), read after the outcomes of the deliveries being counted committed.
        """
        keep_from = now // self.epoch_ms - GRACE_EPOCHS
        if oldest_pending is not None:
            keep_from = min(keep_from, oldest_pending // self.epoch_ms)
        if self._swept_below is not None and keep_from <= self._swept_below:
            return 0
        for epoch in [e for e in self._keys if e < keep_from]:
            del self._keys[epoch]
        destroyed = await asyncio.to_thread(self._destroy_before, keep_from)
        self._swept_below = keep_from
        if destroyed:
            log.info("payload_keys_destroyed", epochs=destroyed)
        return destroyed

    def _destroy_before(self, keep_from: int) -> int:
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return 0
        destroyed = 0
        for name in names:
            stem, dot, ext = name.partition(".")
            if ext != "key" or not dot or not stem.lstrip("-").isdigit():
                continue
            if int(stem) < keep_from:
                _shred(self.root / name)
                destroyed += 1
        if destroyed:
            _fsync_dir(self.root)
        return destroyed


def _shred(path: Path) -> None:
    """Overwrite a key file in place, make that durable, then unlink it."""
    try:
        fd = os.open(path, os.O_WRONLY)
    except FileNotFoundError:
        return  # another replica destroyed it first
    try:
        os.write(fd, bytes(os.fstat(fd).st_size))
        os.fsync(fd)
    finally:
        os.close(fd)
    path.unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
