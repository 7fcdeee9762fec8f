"""Proof that the gateway cannot read: a random marker sent through every path appears nowhere.

An SDK client sends a sandbox WhatsApp user a text, an image with a caption, and a document
with a file name, each carrying the marker; the media bytes carry it too. Once the WhatsApp
user has them (decrypted on the platform side), we scan for the marker in plain, base64
(standard and URL-safe, every alignment) and hex form:
- every table of the gateway's database except the `sandbox_` tables, read through SQL,
- every file under the data dir, byte for byte, including the SQLite database, its -wal and
  -shm files and the media blobs, except files whose name contains `sandbox`,
- the captured logs (stdout, stderr and logging records),
- the audit export (GET /admin/v1/audit).
The sandbox stands for the platforms' side (DESIGN §4.8): its users' decrypted inboxes are
theirs, not the gateway's, so its `sandbox_` tables and `*sandbox*` files are left out. They are
AES-GCM sealed anyway, which is why the raw scan of the database file, which includes the
sandbox tables' pages, still finds nothing.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.http.app_keys import STORE
from tests.conftest import admin_headers
from tests.sdk.conftest import Gateway, SdkFactory


def forms(marker: bytes) -> set[bytes]:
    """The marker as it would look in plain, hex or base64 at any byte alignment."""
    found = {marker, marker.hex().encode(), marker.hex().upper().encode()}
    for pad in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            text = encode(b"\0" * pad + marker)
            # Drop the characters that also depend on neighbouring bytes.
            found.add(text[4:-4])
    return found


def hits(data: bytes, needles: set[bytes]) -> list[bytes]:
    return [n for n in needles if n in data]


async def wait_inbox(gateway: Gateway, uri: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while True:
        items = await gateway.inbox(uri)
        if len(items) >= count or time.monotonic() > deadline:
            return items
        await asyncio.sleep(0.02)


async def test_a_marker_sent_every_way_is_nowhere_in_the_gateway(
    gateway: Gateway,
    onboard_sdk: SdkFactory,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    marker = f"MARKER{secrets.token_hex(16)}"
    needles = forms(marker.encode())
    sdk = await onboard_sdk()
    wa = await gateway.sandbox_user("4915112345678", [sdk.client_id])
    await sdk.publish_keys("alice")

    await sdk.send_text("alice", wa, f"text {marker}")
    await sdk.send_media(
        "alice", wa, b"\x89PNG" + marker.encode() * 3, content_type="image/png",
        caption=f"caption {marker}",
    )  # fmt: skip
    await sdk.send_media(
        "alice", wa, f"%PDF {marker}".encode(), content_type="application/pdf",
        filename=f"{marker}.pdf",
    )  # fmt: skip
    items = await wait_inbox(gateway, wa, 3)
    # Delivered and readable on the platform side: the test could fail.
    delivered = str(items)
    assert delivered.count(marker) == 3, delivered

    store = gateway.app[STORE]
    tables = [
        r[0]
        for r in await store.fetch("SELECT name FROM sqlite_master WHERE type = 'table'")
        if not r[0].startswith("sandbox_")
    ]
    assert {"audit_records", "media", "e2ee_one_time_keys"} <= set(tables)
    for table in tables:
        for row in await store.fetch(f"SELECT * FROM {table}"):  # names come from sqlite_master
            for value in tuple(row):
                raw = value if isinstance(value, bytes) else str(value).encode()
                assert not hits(raw, needles), (table, value)

    async with gateway.http.get(
        f"{gateway.base}/admin/v1/audit", headers=admin_headers()
    ) as response:
        assert response.status == 200
        export = await response.read()
    assert b'"record"' in export and not hits(export, needles)

    data_dir = Path(gateway.config.data_dir)
    scanned = []
    for path in sorted(data_dir.rglob("*")):
        if path.is_file() and "sandbox" not in path.name:
            scanned.append(path.name)
            assert not hits(path.read_bytes(), needles), path
    assert "gateway.db" in scanned and "gateway.db-wal" in scanned
    assert len([p for p in data_dir.joinpath("media").rglob("*") if p.is_file()]) == 2

    out, err = capsys.readouterr()
    logs = (out + err + caplog.text).encode()
    assert b"request_handled" in logs or "request_handled" in str(caplog.records)
    assert not hits(logs, needles)
