"""Providers' registered public keys (JWKS): what is accepted at intake, how a key is found."""

from __future__ import annotations

from typing import Any

import jwt
from jwt import PyJWK

from gateway.errors import ValidationFailed

# Signing algorithms accepted for client assertions, and the key each one needs.
ALGORITHMS: dict[str, tuple[str, str]] = {"ES256": ("EC", "P-256"), "EdDSA": ("OKP", "Ed25519")}
MAX_KEYS = 10
# Members that only a private or symmetric key has (RFC 7518 §6.2.2, §6.3.2, §6.4.1; RFC 8037).
PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
_KID_MAX = 128


def _algorithm_of(key: dict[str, Any]) -> str | None:
    for alg, (kty, crv) in ALGORITHMS.items():
        if key.get("kty") == kty and key.get("crv") == crv:
            return alg
    return None


def check_jwks(jwks: dict[str, Any], *, field: str = "$.jwks") -> list[dict[str, Any]]:
    """The public signing keys of a JWKS, or a 422 naming the first bad member."""
    keys = jwks.get("keys")
    if not isinstance(keys, list) or not keys:
        raise ValidationFailed("A JWKS needs a non-empty `keys` array.", field=f"{field}.keys")
    if len(keys) > MAX_KEYS:
        raise ValidationFailed(f"At most {MAX_KEYS} keys are accepted.", field=f"{field}.keys")
    seen: set[str] = set()
    checked = []
    for i, key in enumerate(keys):
        where = f"{field}.keys[{i}]"
        if not isinstance(key, dict):
            raise ValidationFailed("A key must be a JSON object (a JWK).", field=where)
        for member in PRIVATE_MEMBERS:
            if member in key:
                raise ValidationFailed(
                    f"This JWK holds private or symmetric key material (`{member}`); register "
                    "only public keys and keep the private key to yourself.",
                    field=f"{where}.{member}",
                )
        alg = _algorithm_of(key)
        if alg is None:
            raise ValidationFailed(
                "Only EC P-256 (ES256) and OKP Ed25519 (EdDSA) public keys are accepted.",
                field=f"{where}.kty",
            )
        kid = key.get("kid")
        if not isinstance(kid, str) or not 0 < len(kid) <= _KID_MAX:
            raise ValidationFailed(
                f"Each key needs a `kid` of 1 to {_KID_MAX} characters.", field=f"{where}.kid"
            )
        if kid in seen:
            raise ValidationFailed("Key ids must be unique.", field=f"{where}.kid")
        seen.add(kid)
        if key.get("alg", alg) != alg:
            raise ValidationFailed(f"This key can only sign with {alg}.", field=f"{where}.alg")
        if key.get("use", "sig") != "sig":
            raise ValidationFailed("Keys must be signing keys (`use`: `sig`).", field=where)
        try:
            PyJWK(key, alg)
        except jwt.PyJWTError:
            raise ValidationFailed("This is not a valid public key.", field=f"{where}.x") from None
        checked.append(key)
    return checked


def signing_key(keys: list[dict[str, Any]], kid: str | None, alg: str) -> PyJWK | None:
    """The registered key that `kid` names and that can verify `alg`, or None.

    Without a `kid` the key is taken only when exactly one registered key fits `alg`.
    """
    fitting = [k for k in keys if _algorithm_of(k) == alg]
    if kid is not None:
        fitting = [k for k in fitting if k.get("kid") == kid]
    if len(fitting) != 1:
        return None
    return PyJWK(fitting[0], alg)


def key_for_kid(keys: list[dict[str, Any]], kid: str | None) -> dict[str, Any] | None:
    """The registered key named `kid`, whatever its type."""
    return next((k for k in keys if k.get("kid") == kid), None)
