"""Secrets kept as files under the data dir: created once with mode 0600, then reused."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path


def _write_temp(path: Path, data: bytes) -> Path:
    """`data` durably in a new owner-only (0600) file beside `path`; returns its name."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    return tmp


def replace_private(path: Path, data: bytes) -> None:
    """Replace `path` atomically with `data`, readable by the owner only (0600)."""
    os.replace(_write_temp(path, data), path)


def load_or_create(path: Path, make: Callable[[], bytes]) -> tuple[bytes, bool]:
    """Return the file's bytes, creating it atomically (0600) from `make()` when missing."""
    try:
        return path.read_bytes(), False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _write_temp(path, make())
    try:
        # link() fails if another process created it first; then theirs wins.
        os.link(tmp, path)
        created = True
    except FileExistsError:
        created = False
    finally:
        tmp.unlink()
    return path.read_bytes(), created


def admin_token(data_dir: Path, configured: str) -> tuple[str, Path | None, bool]:
    """The admin token: configured, or generated on first start into <data_dir>/admin-token."""
    if configured:
        return configured, None, False
    path = data_dir / "admin-token"
    data, created = load_or_create(path, lambda: secrets.token_urlsafe(32).encode())
    return data.decode().strip(), path, created
