"""The gateway's access-token keys: first start, verification, rotation and retirement."""

from __future__ import annotations

import stat
import time
from pathlib import Path
from typing import Any

import jwt
import pytest

from gateway.errors import InvalidToken
from gateway.service.access_tokens import KEYS_FILE, AccessTokens

ISSUER = "https://gw.example"


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_first_start_creates_one_private_key_file(tmp_path: Path) -> None:
    tokens = AccessTokens.open(tmp_path, issuer=ISSUER, ttl_s=600)
    path = tmp_path / KEYS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = AccessTokens.open(tmp_path, issuer=ISSUER, ttl_s=600)
    assert again.current_kid == tokens.current_kid  # kept across restarts
    (key,) = tokens.jwks()["keys"]
    assert key["kty"] == "OKP" and key["crv"] == "Ed25519" and "d" not in key


def test_issue_and_verify(tmp_path: Path) -> None:
    tokens = AccessTokens.open(tmp_path, issuer=ISSUER, ttl_s=600)
    token, expires_in = tokens.issue("acme-1", ["messages", "keys"])
    assert expires_in == 600
    claims = tokens.verify(token)
    assert claims.client_id == "acme-1" and claims.scopes == {"messages", "keys"}
    header = jwt.get_unverified_header(token)
    assert header["typ"] == "at+jwt" and header["alg"] == "EdDSA"
    other = AccessTokens.open(tmp_path / "elsewhere", issuer=ISSUER, ttl_s=600)
    with pytest.raises(InvalidToken):
        other.verify(token)  # another gateway's key
    with pytest.raises(InvalidToken):
        AccessTokens.open(tmp_path, issuer="https://other.example", ttl_s=600).verify(token)


def test_an_expired_token_is_refused(tmp_path: Path) -> None:
    clock = Clock()
    tokens = AccessTokens.open(tmp_path, issuer=ISSUER, ttl_s=600, clock=clock)
    token, _ = tokens.issue("acme-1", ["messages"])
    clock.now += 601
    with pytest.raises(InvalidToken, match="expired"):
        tokens.verify(token)


def test_rotation_keeps_old_tokens_valid_until_they_expire(tmp_path: Path) -> None:
    clock = Clock()
    tokens = AccessTokens.open(tmp_path, issuer=ISSUER, ttl_s=600, clock=clock)
    old_kid = tokens.current_kid
    old_token, _ = tokens.issue("acme-1", ["messages"])

    new_kid, retiring = tokens.rotate()
    assert new_kid != old_kid and retiring == [old_kid]
    new_token, _ = tokens.issue("acme-1", ["messages"])
    assert jwt.get_unverified_header(new_token)["kid"] == new_kid
    assert {k["kid"] for k in tokens.jwks()["keys"]} == {old_kid, new_kid}
    assert tokens.verify(old_token).client_id == "acme-1"

    # Another process (a replica restarting, the CLI) reads the same rotated keyring.
    reloaded = AccessTokens.open(tmp_path, issuer=ISSUER, ttl_s=600, clock=clock)
    assert reloaded.current_kid == new_kid
    assert reloaded.verify(old_token).client_id == "acme-1"

    # Once every token the old key signed has expired, it leaves the JWKS and verifies nothing.
    clock.now += 601
    assert [k["kid"] for k in tokens.jwks()["keys"]] == [new_kid]
    with pytest.raises(InvalidToken):
        tokens.verify(old_token)
    newer_kid, retiring = tokens.rotate()
    assert retiring == [new_kid]  # the long-retired key is dropped from the file
    assert old_kid not in (tmp_path / KEYS_FILE).read_text()
    assert newer_kid in (tmp_path / KEYS_FILE).read_text()


async def test_rotation_through_the_admin_route(client: Any, onboarded: Any) -> None:
    from tests.conftest import admin_headers

    before = onboarded.access_token
    response = await client.post("/admin/v1/token-keys/rotate", headers=admin_headers())
    assert response.status == 200
    rotated = await response.json()
    jwks = await (await client.get("/.well-known/jwks.json")).json()
    assert {k["kid"] for k in jwks["keys"]} == {rotated["kid"], *rotated["retiring"]}
    assert (
        await client.get("/v1/me", headers={"Authorization": f"Bearer {before}"})
    ).status == 200
