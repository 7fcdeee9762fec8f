"""Acting as a third-party provider and its users against the relay and the sandbox."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import msgspec

from gateway.crypto import OlmCiphertext, OlmParty
from tests.conftest import admin_headers
from tests.http.providers import provider_headers


async def eventually(check: Callable[[], Awaitable[Any]], within_s: float = 5.0) -> Any:
    """Poll `check` until it returns something truthy (deliveries are asynchronous)."""
    deadline = time.monotonic() + within_s
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def sandbox_user(
    client: Any, service: str, native_id: str, consent: Any = ("acme",), name: str = "Sam"
) -> str:
    consent = consent if consent == "all" else list(consent)
    response = await client.post(
        "/sandbox/v1/users",
        json={"service": service, "id": native_id, "name": name, "consent": consent},
        headers=admin_headers(),
    )
    assert response.status == 201, await response.text()
    return str((await response.json())["uri"])


async def inbox(client: Any, uri: str) -> list[dict[str, Any]]:
    response = await client.get("/sandbox/v1/inbox", params={"user": uri}, headers=admin_headers())
    assert response.status == 200, await response.text()
    return list((await response.json())["items"])


class ThirdPartyUser:
    """A provider's user with its own Olm account, as the provider's client would hold it."""

    def __init__(self, client: Any, client_id: str, local: str) -> None:
        self.client = client
        self.client_id = client_id
        self.uri = f"mimi://{client_id}/u/{local}"
        self.local = local
        self.party = OlmParty()
        self.identity_of: dict[str, str] = {}

    @property
    def headers(self) -> dict[str, str]:
        return provider_headers(self.client_id)

    async def publish_keys(self, n: int = 5) -> None:
        body = msgspec.to_builtins(self.party.key_bundle(n, fallback=True))
        response = await self.client.put(
            f"/v1/users/{quote(self.local, safe='')}/keys", json=body, headers=self.headers
        )
        assert response.status == 200, await response.text()

    async def encrypt_for(self, peer: str, native: dict[str, Any]) -> dict[str, Any]:
        """Encrypt a native send object, claiming the peer's keys (key directory) once."""
        return await self.encrypt_bytes_for(peer, msgspec.json.encode(native))

    async def encrypt_bytes_for(self, peer: str, plaintext: bytes) -> dict[str, Any]:
        """Olm-encrypt `plaintext` for `peer`, claiming its keys (key directory) once."""
        identity = self.identity_of.get(peer)
        if identity is not None and self.party.has_session(identity):
            return self.party.encrypt(identity, plaintext).to_wire()
        response = await self.client.get("/v1/keys", params={"user": peer}, headers=self.headers)
        assert response.status == 200, await response.text()
        bundle = await response.json()
        otk = bundle["one_time_key"] or bundle["fallback_key"]
        self.identity_of[peer] = bundle["identity_key"]
        ciphertext = self.party.encrypt(bundle["identity_key"], plaintext, one_time_key=otk["key"])
        return ciphertext.to_wire()

    def message(self, to: str, *, id: str | None = None, **payload: Any) -> dict[str, Any]:
        return {
            "id": id or uuid.uuid4().hex,
            "from": self.uri,
            "to": to,
            "sent_at": int(time.time() * 1000),
            **payload,
        }

    async def send(self, body: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
        return await self.client.post("/v1/messages", json=body, headers=headers or self.headers)

    def decrypt(self, encrypted: dict[str, Any]) -> Any:
        return msgspec.json.decode(self.decrypt_bytes(encrypted))

    def decrypt_bytes(self, encrypted: dict[str, Any]) -> bytes:
        body = base64.b64encode(base64.b64decode(encrypted["body"])).decode()
        wire = OlmCiphertext.from_wire(encrypted["type"], body, encrypted["sender_key"])
        return self.party.decrypt(wire)


async def pull(client: Any, client_id: str, **params: Any) -> dict[str, Any]:
    response = await client.get(
        "/v1/events", params={k: str(v) for k, v in params.items()},
        headers=provider_headers(client_id),
    )  # fmt: skip
    assert response.status == 200, await response.text()
    return dict(await response.json())


async def events_of(client: Any, client_id: str, type_: str) -> list[dict[str, Any]]:
    page = await pull(client, client_id, limit=500)
    return [e for e in page["events"] if e["type"] == type_]
