"""Delivered payloads are unreadable at rest, on both backends (issue #16 item 6).

Plaintext to an optional-E2EE service (Instagram) goes through the real app with a unique
marker in its text, file name and media key; once delivered and its epoch key destroyed, no
file under the test directory (data dir, SQLite database and WAL) holds the marker in plain,
base64 or hex, and no table row on PostgreSQL does; the sealed copy SQLite's WAL still keeps
can no longer be opened.
"""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from gateway.clock import now_ms
from gateway.http.app_keys import DELIVERY, STORE
from gateway.service.payload_seal import GRACE_EPOCHS, PayloadSealer, PayloadUnreadable
from gateway.store import Store, outbox
from tests.http.relay_support import ThirdPartyUser, eventually, inbox, sandbox_user
from tests.http.test_relay_roundtrip import brclient  # noqa: F401 (fixture)

SEALED = re.compile(rb"s1\.(-?\d+)\.([A-Za-z0-9+/]+=*)")


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def encodings(secret: bytes) -> list[bytes]:
    """`secret` as it could appear in a file: plain, hex, base64 (any alignment, either
    alphabet)."""
    found = [secret, secret.hex().encode(), secret.hex().upper().encode()]
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + secret)
        start = 4 if shift else 0  # the first group mixes in the padding bytes
        whole = (len(secret) - (3 - shift) % 3) // 3  # groups made of the secret's bytes only
        inner = encoded[start : start + 4 * whole]
        found += [inner, inner.replace(b"+", b"-").replace(b"/", b"_")]
    return found


def holders(secrets: list[bytes], data: bytes) -> list[bytes]:
    return [s for secret in secrets for s in encodings(secret) if s in data]


async def table_text(store: Store) -> bytes:
    """Every row of every table of the gateway's PostgreSQL schema, as text."""
    names = await store.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
    )
    rows = []
    for name in names:
        rows += await store.fetch(f'SELECT t::text AS r FROM "{name["tablename"]}" t')
    return "\n".join(row["r"] for row in rows).encode()


async def test_delivered_instagram_plaintext_is_unreadable_at_rest(
    brclient: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    client = brclient
    marker = f"payload-marker-{uuid.uuid4().hex}".encode()
    media_key = hashlib.sha256(marker).digest()
    peer = await sandbox_user(client, "instagram", "17841400000000042")
    alice = ThirdPartyUser(client, "acme", "alice")
    text = {"nestedPart": {
        "cardinality": "single", "contentType": "text/plain;charset=utf-8",
        "content": _b64u(b"hello " + marker),
    }}  # fmt: skip
    image = {"nestedPart": {
        "cardinality": "external", "contentType": "image/jpeg",
        "url": "https://gateway.example/v1/media/m1", "size": 1000, "encAlg": 1,
        "key": _b64u(media_key), "nonce": _b64u(bytes(12)), "hashAlg": 1,
        "contentHash": _b64u(bytes(32)), "filename": f"{marker.decode()}.jpg",
    }}  # fmt: skip
    ids = []
    for content in (text, image):
        response = await alice.send(alice.message(peer, content=content))
        assert response.status == 202, await response.text()
        ids.append((await response.json())["id"])
    assert len(await eventually(lambda: _at_least(client, peer, 2))) == 2
    store = client.app[STORE]

    async def delivered() -> bool:
        statuses = await store.fetch(
            "SELECT status FROM relay_messages WHERE direction = 'outbound'"
        )
        return [row["status"] for row in statuses] == ["delivered", "delivered"]

    await eventually(delivered)
    sealer: PayloadSealer = client.app[DELIVERY].sealer
    keys = sealer.root
    assert [path.suffix for path in keys.iterdir()] == [".key"]  # this minute's key

    secrets = [marker, media_key]
    files = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}
    found = {path: holders(secrets, data) for path, data in files.items()}
    assert {path: held for path, held in found.items() if held} == {}
    if store.dialect == "postgres":
        assert holders(secrets, await table_text(store)) == []
    sealed_copies = [m for data in files.values() for m in SEALED.finditer(data)]
    if store.dialect == "sqlite":
        assert sealed_copies, "the WAL keeps the sealed payloads after delivery"

    # Later, the minute is over and nothing of it waits: its key is destroyed.
    depth, oldest = await outbox.stats(store)
    assert (depth, oldest) == (0, None)
    later = now_ms() + (GRACE_EPOCHS + 1) * sealer.epoch_ms
    assert await sealer.destroy_delivered(oldest, later) == 1
    assert list(keys.iterdir()) == []
    fresh = PayloadSealer(keys)  # nothing cached: what a restarted gateway could read
    for match in sealed_copies:
        value = match.group(0).decode()
        for gateway_id in ids:
            with pytest.raises(PayloadUnreadable):
                await fresh.open(gateway_id, value)


async def _at_least(client: Any, uri: str, n: int) -> list[dict[str, Any]] | None:
    items = await inbox(client, uri)
    return items if len(items) >= n else None
