"""Onboarding and tokens for third-party servers: keys, the RFC 7523 client assertion, refresh.

The gateway authenticates providers with `private_key_jwt` (RFC 7523 §2.2, OpenID Connect Core
§9): the provider signs a short-lived JWT with a key from the JWKS it registered, and trades it
for an access token at the token endpoint (RFC 6749 §4.4, client credentials).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import jwt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# Refresh this long before the token expires, so no request goes out with a stale one.
REFRESH_MARGIN_S = 60.0
ASSERTION_LIFETIME_S = 120  # the gateway accepts at most 5 minutes
# The key id travels beside the key in its PEM file, as explanatory text before the
# encapsulation boundary, which RFC 7468 §2 lets parsers ignore.
KID_LABEL = "kid: "
PEM_BEGIN = "-----BEGIN "


class TokenError(Exception):
    """The token endpoint refused; `error` is the RFC 6749 §5.2 code."""

    def __init__(self, error: str, description: str = "") -> None:
        super().__init__(f"{error}: {description}" if description else error)
        self.error = error


class SigningKey:
    """A provider's ES256 key pair: the private half signs assertions, the JWKS is registered."""

    def __init__(self, private: ec.EllipticCurvePrivateKey, kid: str) -> None:
        self.private = private
        self.kid = kid

    @classmethod
    def generate(cls) -> SigningKey:
        """A fresh P-256 key with a random key id."""
        return cls(ec.generate_private_key(ec.SECP256R1()), uuid.uuid4().hex[:16])

    def save_pem(self, path: str | Path) -> None:
        """Write the private key (PKCS#8 PEM, preceded by its `kid`) to `path`, mode 0600."""
        pem = self.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode("ascii")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            os.fchmod(file.fileno(), 0o600)  # also when the file was there before
            file.write(f"{KID_LABEL}{self.kid}\n{pem}")

    @classmethod
    def load_pem(cls, path: str | Path) -> SigningKey:
        """The key `save_pem` wrote (or any P-256 PKCS#8 PEM, then the kid is its RFC 7638
        thumbprint)."""
        text = Path(path).read_text(encoding="ascii")
        head, begin, block = text.partition(PEM_BEGIN)
        private = serialization.load_pem_private_key((begin + block).encode("ascii"), None)
        if not isinstance(private, ec.EllipticCurvePrivateKey) or not isinstance(
            private.curve, ec.SECP256R1
        ):
            raise ValueError(f"{path}: not a P-256 private key")
        kids = [
            line.removeprefix(KID_LABEL).strip()
            for line in head.splitlines()
            if line.startswith(KID_LABEL)
        ]
        return cls(private, kids[0] if kids else _thumbprint(private))

    def jwk(self) -> dict[str, Any]:
        """The public JWK (RFC 7517) to register in the interop request's `jwks`."""
        jwk: dict[str, Any] = json.loads(
            jwt.algorithms.ECAlgorithm.to_jwk(self.private.public_key())
        )
        return {**jwk, "kid": self.kid, "alg": "ES256", "use": "sig"}

    def jwks(self) -> dict[str, Any]:
        """`{"keys": [jwk]}`."""
        return {"keys": [self.jwk()]}

    def client_assertion(self, client_id: str, token_url: str, *, now: float | None = None) -> str:
        """The signed JWT: iss = sub = client_id, aud = the token endpoint, unique jti."""
        issued = int(time.time() if now is None else now)
        claims = {
            "iss": client_id,
            "sub": client_id,
            "aud": token_url,
            "iat": issued,
            "exp": issued + ASSERTION_LIFETIME_S,
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, self.private, algorithm="ES256", headers={"kid": self.kid})


def _thumbprint(private: ec.EllipticCurvePrivateKey) -> str:
    """The RFC 7638 JWK thumbprint of the public key (SHA-256, base64url)."""
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private.public_key()))
    members = {name: jwk[name] for name in ("crv", "kty", "x", "y")}
    canonical = json.dumps(members, sort_keys=True, separators=(",", ":")).encode()
    digest = hashes.Hash(hashes.SHA256())
    digest.update(canonical)
    return base64.urlsafe_b64encode(digest.finalize()).rstrip(b"=").decode("ascii")


class TokenSource:
    """Hands out a valid access token, fetching a new one shortly before the current expires."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        token_url: str,
        client_id: str,
        key: SigningKey,
        scopes: tuple[str, ...] | None = None,
    ) -> None:
        self.session = session
        self.token_url = token_url
        self.client_id = client_id
        self.key = key
        self.scopes = scopes
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()

    async def token(self) -> str:
        """The current token, refreshed when it has less than a minute left."""
        async with self._lock:
            if self._token is None or time.monotonic() > self._expires_at - REFRESH_MARGIN_S:
                await self._fetch()
            assert self._token is not None
            return self._token

    def invalidate(self) -> None:
        """Forget the token (the gateway refused it): the next call fetches a new one."""
        self._token = None

    async def _fetch(self) -> None:
        form = {
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": self.key.client_assertion(self.client_id, self.token_url),
        }
        if self.scopes is not None:  # none asked: every scope the provider was granted
            form["scope"] = " ".join(self.scopes)
        started = time.monotonic()
        async with self.session.post(self.token_url, data=form) as response:
            body = await response.json(content_type=None)
        if response.status != 200 or "access_token" not in body:
            raise TokenError(
                str(body.get("error", response.status)), body.get("error_description", "")
            )
        self._token = body["access_token"]
        self._expires_at = started + float(body.get("expires_in", 300))


async def request_interop(
    session: aiohttp.ClientSession,
    base_url: str,
    *,
    organisation: str,
    contact_email: str,
    key: SigningKey,
    services: list[str],
    functionalities: list[str],
) -> dict[str, Any]:
    """Submit an interoperability request (Art. 7(5)); the answer carries its status token."""
    body = {
        "organisation": organisation,
        "contact_email": contact_email,
        "services": services,
        "functionalities": functionalities,
        "jwks": key.jwks(),
    }
    async with session.post(f"{base_url}/v1/interop-requests", json=body) as response:
        answer: dict[str, Any] = await response.json(content_type=None)
        if response.status != 201:
            raise TokenError("interop_request_refused", str(answer.get("detail", "")))
    return answer


async def request_status(
    session: aiohttp.ClientSession, base_url: str, request_id: str, status_token: str
) -> dict[str, Any]:
    """The interop request's status; once approved it names the provider's `client_id`."""
    headers = {"Authorization": f"Bearer {status_token}"}
    async with session.get(f"{base_url}/v1/interop-requests/{request_id}", headers=headers) as r:
        answer: dict[str, Any] = await r.json(content_type=None)
    return answer
