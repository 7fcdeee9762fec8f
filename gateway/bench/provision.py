"""Set a gateway up as a real provider would find it: onboarded through the API, with users.

Interop request -> admin approval -> RFC 7523 private_key_jwt assertion -> access token; then
sandbox users on WhatsApp and Instagram who consent to the provider, and message bodies for
them: Olm ciphertext for WhatsApp (E2EE required), MIMI plaintext for Instagram.
"""

from __future__ import annotations

import base64
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import jwt
import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway.bench.wrk import ID_SLOT
from gateway.crypto import OlmParty

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# "hello from the bench", base64url: what Instagram users receive in plaintext.
TEXT = {
    "nestedPart": {
        "cardinality": "single",
        "contentType": "text/plain;charset=utf-8",
        "content": "aGVsbG8gZnJvbSB0aGUgYmVuY2g",
    }
}
NATIVE_TEXT = {"type": "text", "text": {"body": "hello from the bench"}}


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class BenchError(RuntimeError):
    """A setup step failed (the answer's status and body say why)."""


async def _expect(response: aiohttp.ClientResponse, status: int, step: str) -> Any:
    if response.status != status:
        raise BenchError(f"{step}: {response.status} {await response.text()}")
    return await response.json()


@dataclass
class Provider:
    """An onboarded provider: client id, its signing key and a current access token."""

    base_url: str
    client_id: str
    key: Ed25519PrivateKey
    kid: str
    access_token: str = ""
    # Where its sandbox users are made: the gateway itself (embedded sandbox) or a standalone
    # sandbox process.
    sandbox_url: str = ""
    whatsapp: list[str] = field(default_factory=list)
    instagram: list[str] = field(default_factory=list)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}

    def sender(self, n: int) -> str:
        return f"mimi://{self.client_id}/u/bench-{n}"

    def assertion(self) -> str:
        """A fresh client assertion (RFC 7523 §3) for the token endpoint."""
        now = int(time.time())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": f"{self.base_url}/v1/oauth/token",
            "iat": now,
            "exp": now + 60,
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, self.key, algorithm="EdDSA", headers={"kid": self.kid})

    async def refresh_token(self, session: aiohttp.ClientSession) -> None:
        """Exchange a new assertion for a new access token."""
        form = {
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": self.assertion(),
            "scope": "messages keys events",
        }
        async with session.post(f"{self.base_url}/v1/oauth/token", data=form) as response:
            issued = await _expect(response, 200, "token")
        self.access_token = issued["access_token"]


async def onboard(session: aiohttp.ClientSession, base_url: str, admin_token: str) -> Provider:
    """Request interop, approve it as the admin, authenticate with private_key_jwt."""
    key = Ed25519PrivateKey.generate()
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    kid = f"bench-{uuid.uuid4().hex[:8]}"
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": _b64u(raw), "kid": kid, "alg": "EdDSA"}
    request = {
        "organisation": "Bench Messenger",
        "contact_email": "bench@example.org",
        "services": ["whatsapp", "messenger", "instagram"],
        "functionalities": ["text"],
        "jwks": {"keys": [jwk]},
    }
    async with session.post(f"{base_url}/v1/interop-requests", json=request) as response:
        created = await _expect(response, 201, "interop request")
    admin = {"Authorization": f"Bearer {admin_token}"}
    decision = {"decision": "approve", "reason": "benchmark"}
    url = f"{base_url}/admin/v1/interop-requests/{created['id']}/decision"
    async with session.post(url, json=decision, headers=admin) as response:
        await _expect(response, 200, "admin decision")
    status_headers = {"Authorization": f"Bearer {created['status_token']}"}
    url = f"{base_url}/v1/interop-requests/{created['id']}"
    async with session.get(url, headers=status_headers) as response:
        status = await _expect(response, 200, "request status")
    provider = Provider(base_url=base_url, client_id=status["client_id"], key=key, kid=kid)
    await provider.refresh_token(session)
    return provider


async def create_users(
    session: aiohttp.ClientSession, provider: Provider, admin_token: str, per_service: int
) -> None:
    """Sandbox users on WhatsApp and Instagram, consenting to `provider`."""
    admin = {"Authorization": f"Bearer {admin_token}"}
    for service, users in (("whatsapp", provider.whatsapp), ("instagram", provider.instagram)):
        for n in range(per_service):
            native = f"49151{n:08d}" if service == "whatsapp" else f"178414{n:010d}"
            body = {
                "service": service,
                "id": native,
                "name": f"Bench {service} {n}",
                "consent": [provider.client_id],
            }
            url = f"{provider.sandbox_url or provider.base_url}/sandbox/v1/users"
            async with session.post(url, json=body, headers=admin) as response:
                created = await _expect(response, 201, "sandbox user")
            users.append(created["uri"])


async def open_session(
    session: aiohttp.ClientSession, provider: Provider, party: OlmParty, peer: str
) -> str:
    """Claim `peer`'s keys (GET /v1/keys) and start an Olm session; the peer's identity key."""
    async with session.get(
        f"{provider.base_url}/v1/keys", params={"user": peer}, headers=provider.headers
    ) as response:
        bundle = await _expect(response, 200, "claim keys")
    otk = bundle["one_time_key"] or bundle["fallback_key"]
    party.encrypt(bundle["identity_key"], b"{}", one_time_key=otk["key"])
    identity: str = bundle["identity_key"]
    return identity


def _message(sender: str, recipient: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": ID_SLOT,
        "from": sender,
        "to": recipient,
        "sent_at": int(time.time() * 1000),
        **payload,
    }


async def templates(session: aiohttp.ClientSession, provider: Provider) -> list[str]:
    """Bodies with an id slot, alternating WhatsApp (one real Olm ciphertext per recipient,
    reused: only the platform side could notice) and Instagram (MIMI plaintext)."""
    out = []
    for n, (wa, ig) in enumerate(zip(provider.whatsapp, provider.instagram, strict=True)):
        party = OlmParty()
        peer = await open_session(session, provider, party, wa)
        ciphertext = party.encrypt(peer, msgspec.json.encode(NATIVE_TEXT)).to_wire()
        out.append(
            msgspec.json.encode(_message(provider.sender(n), wa, {"encrypted": ciphertext}))
        )
        out.append(msgspec.json.encode(_message(provider.sender(n), ig, {"content": TEXT})))
    return [t.decode() for t in out]


class Conversations:
    """Per connection, `per_connection` conversations sent in order, round robin: even
    connections write to WhatsApp users with fresh Olm ciphertext per message (so every one
    decrypts on the platform side), odd ones to Instagram users in MIMI plaintext."""

    def __init__(self, provider: Provider, run: str, per_connection: int = 8) -> None:
        self.provider = provider
        self.run = run
        self.per_connection = per_connection
        self.parties: dict[tuple[int, int], tuple[OlmParty, str]] = {}
        self._ready: dict[tuple[int, int], bytes] = {}

    def _sender(self, connection: int, k: int) -> str:
        return self.provider.sender(1000 + connection * self.per_connection + k)

    def _recipient(self, connection: int, k: int) -> str:
        users = self.provider.whatsapp if connection % 2 == 0 else self.provider.instagram
        return users[(connection // 2 * self.per_connection + k) % len(users)]

    async def open(self, session: aiohttp.ClientSession, connections: int) -> None:
        """Start one Olm session per WhatsApp conversation."""
        for connection in range(0, connections, 2):
            for k in range(self.per_connection):
                party = OlmParty()
                peer = self._recipient(connection, k)
                identity = await open_session(session, self.provider, party, peer)
                self.parties[connection, k] = (party, identity)

    def prepare(self, connections: int, per_connection: int) -> None:
        """Make the first `per_connection` bodies of each connection now, before the clock
        starts, so the load generator is not held up encrypting (later ones are made then)."""
        for connection in range(connections):
            for seq in range(per_connection):
                self._ready[connection, seq] = self._make(connection, seq)

    def body(self, connection: int, seq: int) -> bytes:
        """The next message of `connection`: its conversations take turns."""
        ready = self._ready.pop((connection, seq), None)
        return ready if ready is not None else self._make(connection, seq)

    def _make(self, connection: int, seq: int) -> bytes:
        k = seq % self.per_connection
        sender, recipient = self._sender(connection, k), self._recipient(connection, k)
        if connection % 2 == 0:
            party, peer = self.parties[connection, k]
            ciphertext = party.encrypt(peer, msgspec.json.encode(NATIVE_TEXT)).to_wire()
            message = _message(sender, recipient, {"encrypted": ciphertext})
        else:
            message = _message(sender, recipient, {"content": TEXT})
        message["id"] = f"{self.run}-{connection}-{seq}"
        return msgspec.json.encode(message)
