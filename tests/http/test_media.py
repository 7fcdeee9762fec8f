"""Encrypted media through HTTP: streamed upload, per-service limits, access, expiry."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec

from gateway.crypto import OlmParty, decrypt_media, encrypt_media
from gateway.http.app_keys import CONSENT, MEDIA, STORE
from tests.conftest import assert_problem
from tests.http.providers import provider_headers

OCTETS = {"Content-Type": "application/octet-stream"}
MB = 1024 * 1024


async def with_peer(client: Any, client_id: str = "beta", user: str = "bob") -> str:
    body = msgspec.to_builtins(OlmParty().key_bundle(1))
    response = await client.put(
        f"/v1/users/{user}/keys", json=body, headers=provider_headers(client_id)
    )
    assert response.status == 200
    return f"mimi://{client_id}/u/{user}"


WA = "mimi://whatsapp/u/4915112345678"


async def consenting(client: Any, uri: str = WA, *providers: str) -> str:
    """`uri`, a platform user who consented to `providers` (acme when none are named)."""
    await client.app[CONSENT].set(uri, list(providers or ("acme",)))
    return uri


def comparable(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in ("request_id", "instance")}


async def upload(client: Any, data: Any, to: str, *, kind: str | None = None, as_: str = "acme"):
    params = {"to": to, **({"kind": kind} if kind else {})}
    headers = {**OCTETS, **provider_headers(as_)}
    return await client.post("/v1/media", data=data, params=params, headers=headers)


async def problem(response: Any, status: int, type_: str) -> dict[str, Any]:
    body = await response.json()
    assert_problem(response.status, response.content_type, body, status, type_)
    return body


def media_files(config: Any) -> list[Path]:
    return sorted(p for p in config.media_path.rglob("*") if p.is_file())


async def test_upload_and_download_by_both_sides_only(
    backend_pclient: Any, backend_config: Any
) -> None:
    client = backend_pclient
    peer = await consenting(client)
    ciphertext, key = encrypt_media(b"holiday photo bytes")
    response = await upload(client, ciphertext, peer)
    assert response.status == 201
    info = await response.json()
    assert info["size"] == len(ciphertext)
    assert info["sha256"] == hashlib.sha256(ciphertext).hexdigest() == key.sha256.hex()
    got = await client.get(f"/v1/media/{info['id']}", headers=provider_headers("acme"))
    assert got.status == 200
    assert got.content_type == "application/octet-stream"
    assert decrypt_media(await got.read(), key) == b"holiday photo bytes"
    got_by_peer = await client.app[MEDIA].read_for_platform(peer, info["id"])
    assert got_by_peer is not None and decrypt_media(got_by_peer, key) == b"holiday photo bytes"
    # A third provider and an unknown id get the same 404.
    bodies = []
    for media_id, who in ((info["id"], "gamma"), ("no-such-id", "acme")):
        got = await client.get(f"/v1/media/{media_id}", headers=provider_headers(who))
        body = await problem(got, 404, "/problems/not-found")
        bodies.append({k: v for k, v in body.items() if k not in ("request_id", "instance")})
    assert bodies[0] == bodies[1]
    # Stored atomically under its digest, nothing left in the temporary folder.
    assert [
        p.relative_to(backend_config.media_path).as_posix() for p in media_files(backend_config)
    ] == [f"{info['sha256'][:2]}/{info['sha256']}"]
    # Audited in the same transaction: digest and size, never the bytes.
    row = await client.app[STORE].fetchrow(
        "SELECT status, payload_sha256, payload_size, subjects FROM audit_records "
        "WHERE action = 'media.upload'"
    )
    assert (row["status"], row["payload_sha256"], row["payload_size"]) == (
        201,
        info["sha256"],
        len(ciphertext),
    )
    assert "4915112345678" not in row["subjects"]


async def test_whatsapp_limits_apply_per_kind_and_overall(
    backend_pclient: Any, backend_config: Any
) -> None:
    client = backend_pclient
    peer = await consenting(client)
    image_limit = 5 * MB + 16  # the service's image limit plus the AES-GCM tag
    response = await upload(client, io.BytesIO(os.urandom(image_limit)), peer, kind="image")
    assert response.status == 201
    response = await upload(client, io.BytesIO(b"\0" * (image_limit + 1)), peer, kind="image")
    body = await problem(response, 413, "/problems/payload-too-large")
    assert body["field"] == "body"

    async def stream() -> AsyncIterator[bytes]:  # no Content-Length: refused while streaming
        for _ in range(6):
            yield b"\1" * MB

    response = await upload(client, stream(), peer, kind="image")
    await problem(response, 413, "/problems/payload-too-large")
    assert list(backend_config.media_path.joinpath("tmp").iterdir()) == []
    response = await upload(client, b"x", peer, kind="hologram")
    assert (await problem(response, 422, "/problems/validation"))["field"] == "kind"
    # Without a kind, the largest WhatsApp limit (documents, 100 MB) applies.
    assert client.app[MEDIA].limit_for(peer, None) == 100 * MB + 16
    assert client.app[MEDIA].limit_for("mimi://instagram/u/1", None) == 25 * MB + 16


async def test_upload_input_errors(backend_pclient: Any) -> None:
    client = backend_pclient
    peer = await with_peer(client, "acme")
    headers = {"Content-Type": "image/png", **provider_headers("acme")}
    response = await client.post("/v1/media", data=b"x", params={"to": peer}, headers=headers)
    assert (await problem(response, 415, "/problems/unsupported-media-type"))["field"] == (
        "Content-Type"
    )
    response = await upload(client, b"x", "")
    assert (await problem(response, 422, "/problems/validation"))["field"] == "to"
    response = await upload(client, b"x", "mimi://beta/u/nobody")
    await problem(response, 404, "/problems/unknown-recipient")
    response = await upload(client, b"", peer)
    assert (await problem(response, 422, "/problems/validation"))["field"] == "body"
    response = await upload(client, b"x", peer, kind="image")
    assert (await problem(response, 422, "/problems/validation"))["field"] == "kind"
    response = await client.post("/v1/media", data=b"x", params={"to": peer}, headers=OCTETS)
    await problem(response, 401, "/problems/unauthorized")
    response = await client.post(
        "/v1/media",
        data=b"x",
        params={"to": peer},
        headers={**OCTETS, **provider_headers("acme", scopes=("keys",))},
    )
    await problem(response, 403, "/problems/insufficient-scope")


async def test_expired_media_is_gone_and_its_blob_removed(
    backend_pclient: Any, backend_config: Any
) -> None:
    client = backend_pclient
    peer = await with_peer(client, "acme")
    first = await (await upload(client, b"same ciphertext", peer)).json()
    second = await (await upload(client, b"same ciphertext", peer)).json()
    assert first["sha256"] == second["sha256"] and first["id"] != second["id"]
    store = client.app[STORE]

    async def expire(tx: Any) -> None:
        await tx.execute("UPDATE media SET expires_at = 0 WHERE id = $1", first["id"])

    await store.write("test_expire", expire)
    got = await client.get(f"/v1/media/{first['id']}", headers=provider_headers("acme"))
    await problem(got, 404, "/problems/not-found")
    assert await client.app[MEDIA].remove_expired() == 1
    # The blob is shared with a live record: it stays until that one expires too.
    assert len(media_files(backend_config)) == 1
    await store.write("test_expire", lambda tx: tx.execute("UPDATE media SET expires_at = 0"))
    await client.app[MEDIA].remove_expired()
    assert media_files(backend_config) == []


async def test_the_platform_side_reads_and_uploads_its_conversations(backend_pclient: Any) -> None:
    client = backend_pclient
    service = client.app[MEDIA]
    wa = await consenting(client)
    info = await (await upload(client, b"to whatsapp", wa)).json()
    assert await service.read_for_platform(wa, info["id"]) == b"to whatsapp"
    assert await service.read_for_platform("mimi://whatsapp/u/1", info["id"]) is None
    assert await service.read_for_platform("mimi://messenger/u/1", info["id"]) is None
    peer = await with_peer(client)
    sent = await service.upload_for_platform(wa, peer, b"from whatsapp")
    got = await client.get(f"/v1/media/{sent.id}", headers=provider_headers("beta"))
    assert await got.read() == b"from whatsapp"
    got = await client.get(f"/v1/media/{sent.id}", headers=provider_headers("acme"))
    assert got.status == 404
    assert await service.read_for_platform("mimi://whatsapp/u/2", sent.id) == b"from whatsapp"


async def test_another_providers_user_is_unknown_as_a_media_peer(backend_pclient: Any) -> None:
    client = backend_pclient
    peer = await with_peer(client, "beta", "bob")
    bodies = []
    for to in (peer, "mimi://beta/u/nobody"):
        response = await upload(client, b"x", to)
        bodies.append(comparable(await problem(response, 404, "/problems/unknown-recipient")))
    assert bodies[0] == bodies[1]
    assert await client.app[STORE].fetchval("SELECT count(*) FROM media") == 0


async def test_platform_peers_need_consent_and_an_approved_service(backend_pclient: Any) -> None:
    from tests.onboarding_helpers import register_provider

    client = backend_pclient
    await register_provider(client.app, "narrow", services=("whatsapp", "messenger"))
    ig = await consenting(client, "mimi://instagram/u/1789", "acme", "narrow")
    wa = await consenting(client, WA, "narrow")
    assert (await upload(client, b"x", wa, as_="narrow")).status == 201
    bodies = []
    for to, who in ((ig, "narrow"), (wa, "acme"), ("mimi://instagram/u/1790", "narrow")):
        response = await upload(client, b"x", to, as_=who)
        bodies.append(comparable(await problem(response, 404, "/problems/unknown-recipient")))
    assert bodies[0] == bodies[1] == bodies[2]


async def test_a_provider_is_refused_past_its_media_quota(
    backend_pclient: Any, backend_config: Any
) -> None:
    client = backend_pclient
    peer = await consenting(client, WA, "acme", "beta")
    client.app[MEDIA].quota_bytes = 100
    assert (await upload(client, b"a" * 60, peer)).status == 201
    response = await upload(client, b"b" * 41, peer)  # declared: refused before reading
    body = await problem(response, 413, "/problems/media-quota-exceeded")
    assert body["field"] == "body" and "100" in body["detail"]

    async def stream() -> AsyncIterator[bytes]:  # no Content-Length: refused once staged
        yield b"c" * 41

    response = await upload(client, stream(), peer)
    await problem(response, 413, "/problems/media-quota-exceeded")
    assert len(media_files(backend_config)) == 1  # the refused blob is not kept
    # Another provider has its own quota; expired media no longer counts.
    assert (await upload(client, b"d" * 60, peer, as_="beta")).status == 201
    await client.app[STORE].write(
        "test_expire", lambda tx: tx.execute("UPDATE media SET expires_at = 1")
    )
    assert (await upload(client, b"e" * 100, peer)).status == 201
