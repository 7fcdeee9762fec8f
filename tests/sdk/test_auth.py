"""SigningKey kept on disk: PEM save and load keep the key and its kid, and the file private."""

from __future__ import annotations

import base64
import hashlib
import json
import stat
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from gateway.sdk import SigningKey


def test_a_saved_key_loads_as_the_same_key_with_its_kid(tmp_path: Path) -> None:
    key = SigningKey.generate()
    path = tmp_path / "provider-key.pem"
    key.save_pem(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = SigningKey.load_pem(path)
    assert loaded.kid == key.kid
    assert loaded.jwks() == key.jwks()
    assertion = loaded.client_assertion("acme", "https://gw.example/v1/oauth/token")
    claims = jwt.decode(
        assertion,
        key.private.public_key(),
        algorithms=["ES256"],
        audience="https://gw.example/v1/oauth/token",
    )
    assert claims["iss"] == "acme" and jwt.get_unverified_header(assertion)["kid"] == key.kid


def test_saving_over_a_readable_file_makes_it_private(tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    path.write_text("old")
    path.chmod(0o644)
    SigningKey.generate().save_pem(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "old" not in path.read_text()


def test_a_plain_pkcs8_pem_loads_with_its_thumbprint_as_kid(tmp_path: Path) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "openssl.pem"
    path.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private.public_key()))
    canonical = json.dumps({k: jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"))
    thumbprint = base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest())
    assert SigningKey.load_pem(path).kid == thumbprint.rstrip(b"=").decode()


def test_a_key_of_another_type_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ed25519.pem"
    path.write_bytes(
        ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(ValueError, match="not a P-256 private key"):
        SigningKey.load_pem(path)
