"""Access tokens: JWTs (RFC 9068 profile) signed with EdDSA by the gateway's own keys.

The keys live in one file under the data dir (mode 0600), created on first start. Rotation puts
a new key in front; the old one keeps verifying, and stays published in the JWKS, until the
last token it signed has expired; then it is dropped.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway import secretfiles
from gateway.errors import InvalidToken

TOKEN_TYPE = "at+jwt"  # RFC 9068 §2.1: keeps other JWTs from passing as access tokens
KEYS_FILE = "token-signing-keys.json"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SigningKey(msgspec.Struct, frozen=True, kw_only=True):
    kid: str
    # Raw 32-byte Ed25519 private key, base64url.
    d: str
    created_at: int
    # Until when (ms) a rotated-out key still verifies and stays published; None: current.
    retire_at: int | None = None

    def private_key(self) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(_unb64(self.d))

    def public_jwk(self) -> dict[str, str]:
        raw = self.private_key().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return {"kty": "OKP", "crv": "Ed25519", "x": _b64(raw), "kid": self.kid}


class Keyring(msgspec.Struct, frozen=True, kw_only=True):
    keys: list[SigningKey]


def new_signing_key(now_ms: int) -> SigningKey:
    """A fresh Ed25519 key whose kid is its RFC 7638 JWK thumbprint."""
    private = Ed25519PrivateKey.generate()
    x = _b64(private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
    canonical = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": x}, separators=(",", ":"))
    kid = _b64(hashlib.sha256(canonical.encode()).digest())
    raw = private.private_bytes_raw()
    return SigningKey(kid=kid, d=_b64(raw), created_at=now_ms)


class AccessClaims(msgspec.Struct, frozen=True, kw_only=True):
    client_id: str
    scopes: frozenset[str]
    exp: int


class AccessTokens:
    """Issue, verify and rotate the gateway's access tokens."""

    def __init__(
        self,
        path: Path,
        *,
        issuer: str,
        ttl_s: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.issuer = issuer
        self.ttl_s = ttl_s
        self._clock = clock
        self._mtime = 0.0
        self._keys: list[SigningKey] = []
        self._public: dict[str, Ed25519PublicKey] = {}
        self._load()

    @classmethod
    def open(cls, data_dir: Path, *, issuer: str, ttl_s: int, **kw: Any) -> AccessTokens:
        """The keyring under `data_dir`, created with a first key on first start (mode 0600)."""
        path = data_dir / KEYS_FILE
        secretfiles.load_or_create(
            path,
            lambda: msgspec.json.encode(Keyring(keys=[new_signing_key(int(time.time() * 1000))])),
        )
        return cls(path, issuer=issuer, ttl_s=ttl_s, **kw)

    def _load(self) -> None:
        ring = msgspec.json.decode(self.path.read_bytes(), type=Keyring)
        self._mtime = self.path.stat().st_mtime
        self._keys = ring.keys
        self._public = {k.kid: k.private_key().public_key() for k in ring.keys}

    def _refresh(self) -> None:
        # Another process (the CLI) may have rotated the keys.
        if self.path.stat().st_mtime != self._mtime:
            self._load()

    def _live(self, now_ms: int) -> list[SigningKey]:
        return [k for k in self._keys if k.retire_at is None or k.retire_at > now_ms]

    @property
    def current_kid(self) -> str:
        return self._keys[0].kid

    def jwks(self) -> dict[str, Any]:
        """The public keys that verify tokens still alive, for /.well-known/jwks.json."""
        self._refresh()
        now_ms = int(self._clock() * 1000)
        return {
            "keys": [{**k.public_jwk(), "use": "sig", "alg": "EdDSA"} for k in self._live(now_ms)]
        }

    def issue(self, client_id: str, scopes: frozenset[str] | list[str]) -> tuple[str, int]:
        """A signed access token for `client_id` with `scopes`, and its lifetime in seconds."""
        self._refresh()
        now = int(self._clock())
        key = self._keys[0]
        claims = {
            "iss": self.issuer,
            "aud": self.issuer,
            "sub": client_id,
            "client_id": client_id,
            "scope": " ".join(scopes),
            "iat": now,
            "exp": now + self.ttl_s,
            "jti": uuid.uuid4().hex,
        }
        token = jwt.encode(
            claims,
            key.private_key(),
            algorithm="EdDSA",
            headers={"kid": key.kid, "typ": TOKEN_TYPE},
        )
        return token, self.ttl_s

    def verify(self, token: str) -> AccessClaims:
        """The claims of a token this gateway signed and that is still valid, or InvalidToken."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("The access token is not a JWT.") from None
        if header.get("typ") != TOKEN_TYPE or header.get("alg") != "EdDSA":
            raise InvalidToken("The access token is not one of this gateway's.")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise InvalidToken("The access token names no signing key.")
        public = self._public.get(kid)
        if public is None:
            self._refresh()
            public = self._public.get(kid)
        now_ms = int(self._clock() * 1000)
        if public is None or kid not in {k.kid for k in self._live(now_ms)}:
            raise InvalidToken("The access token's signing key is unknown or retired.")
        try:
            claims = jwt.decode(
                token,
                public,
                algorithms=["EdDSA"],
                audience=self.issuer,
                issuer=self.issuer,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("The access token has expired.") from None
        except jwt.PyJWTError:
            raise InvalidToken("The access token is invalid.") from None
        exp = claims["exp"]
        if not isinstance(exp, int) or exp <= self._clock():
            raise InvalidToken("The access token has expired.")
        scope = claims.get("scope", "")
        client_id = claims["sub"]
        if not isinstance(scope, str) or not isinstance(client_id, str):
            raise InvalidToken("The access token is invalid.")
        return AccessClaims(client_id=client_id, scopes=frozenset(scope.split()), exp=exp)

    def rotate(self) -> tuple[str, list[str]]:
        """Sign with a new key from now on; the previous ones retire when their tokens expire.

        Returns the new kid and the kids still published beside it.
        """
        self._refresh()
        now_ms = int(self._clock() * 1000)
        # A key retires once the last token it may have signed has expired.
        retire_at = now_ms + self.ttl_s * 1000
        kept = [
            k if k.retire_at is not None else msgspec.structs.replace(k, retire_at=retire_at)
            for k in self._live(now_ms)
        ]
        fresh = new_signing_key(now_ms)
        secretfiles.replace_private(self.path, msgspec.json.encode(Keyring(keys=[fresh, *kept])))
        self._load()
        return fresh.kid, [k.kid for k in kept]
