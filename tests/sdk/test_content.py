"""What the SDK encrypts for each service, and how it reads what it decrypts."""

from __future__ import annotations

import os
from pathlib import Path

import jwt
import msgspec

from gateway.content import ExternalPart, message_id
from gateway.crypto import OlmCiphertext, decrypt_media, encrypt_media
from gateway.sdk import SdkState, SigningKey
from gateway.sdk import content as c

WA = "mimi://whatsapp/u/4915112345678"
ME = "mimi://acme/u/alice"


def test_whatsapp_plaintexts_are_cloud_api_objects(tmp_path: Path) -> None:
    refs = SdkState(tmp_path / "s.db", os.urandom(32))
    first = c.text("Hallo")
    (plain,) = c.to_plaintexts(WA, first, refs)
    assert msgspec.json.decode(plain) == {"type": "text", "text": {"body": "Hallo"}}
    refs.remember(
        "whatsapp", c.native_message_id("whatsapp", "gw-1"), message_id(first, sender_uri=ME)
    )
    target = refs.mimi_id("whatsapp", "wamid.gw-1")
    (plain,) = c.to_plaintexts(WA, c.reaction(target, "👍"), refs)
    assert msgspec.json.decode(plain) == {
        "type": "reaction",
        "reaction": {"message_id": "wamid.gw-1", "emoji": "👍"},
    }
    (plain,) = c.to_plaintexts(WA, c.text("ja", reply_to=target), refs)
    assert msgspec.json.decode(plain)["context"] == {"message_id": "wamid.gw-1"}
    (plain,) = c.to_plaintexts(WA, c.edit(target, "Hallo!"), refs)
    assert msgspec.json.decode(plain)["edit"]["original_message_id"] == "wamid.gw-1"
    (plain,) = c.to_plaintexts(WA, c.delete(target), refs)
    assert msgspec.json.decode(plain)["type"] == "revoke"
    (plain,) = c.to_plaintexts("mimi://messenger/u/77", c.text("hi"), refs)
    assert msgspec.json.decode(plain) == {"text": "hi"}


def test_media_round_trips_through_the_native_object(tmp_path: Path) -> None:
    refs = SdkState(tmp_path / "s.db", os.urandom(32))
    ciphertext, key = encrypt_media(b"\x89PNG fake")
    sent = c.media(
        "https://gw/v1/media/abc", key, content_type="image/png", size=10, caption="Look"
    )
    (plain,) = c.to_plaintexts(WA, sent, refs)
    native = msgspec.json.decode(plain)
    assert native["type"] == "image"
    assert native["image"]["link"] == "https://gw/v1/media/abc"
    assert native["image"]["caption"] == "Look"
    content, obj = c.from_plaintext(WA, plain, refs)
    assert obj == native
    part = content.nested_part
    assert isinstance(part, ExternalPart)
    assert decrypt_media(ciphertext, c.media_key_of(part, len(ciphertext))) == b"\x89PNG fake"
    assert c.upload_kind("whatsapp", "image/png") == "image"
    assert c.upload_kind("whatsapp", "application/pdf") == "document"
    assert c.upload_kind("messenger", "application/pdf") == "file"


def test_third_party_peers_get_mimi_json(tmp_path: Path) -> None:
    refs = SdkState(tmp_path / "s.db", os.urandom(32))
    (plain,) = c.to_plaintexts("mimi://beta/u/bob", c.text("hi"), refs)
    content, native = c.from_plaintext("mimi://beta/u/bob", plain, refs)
    assert native is None
    assert content.nested_part.content == b"hi"  # type: ignore[union-attr]


def test_sessions_survive_a_restart_and_the_file_holds_no_plain_key(tmp_path: Path) -> None:
    key = os.urandom(32)
    state = SdkState(tmp_path / "s.db", key)
    bob = state.party("mimi://beta/u/bob")
    bundle = bob.key_bundle(1)
    (otk,) = bundle.one_time_keys.values()
    alice = SdkState(tmp_path / "a.db", key).party(ME)
    first = alice.encrypt(bob.identity_key, b"one", one_time_key=otk.key)
    assert bob.decrypt(first) == b"one"
    state.save("mimi://beta/u/bob")
    state.close()
    again = SdkState(tmp_path / "s.db", key)
    restored = again.party("mimi://beta/u/bob")
    wire = alice.encrypt(bob.identity_key, b"two").to_wire()
    parsed = OlmCiphertext.from_wire(wire["type"], wire["body"], wire["sender_key"])
    assert restored.decrypt(parsed) == b"two"
    assert bundle.identity_key.encode() not in (tmp_path / "s.db").read_bytes()


def test_client_assertion_is_rfc7523() -> None:
    key = SigningKey.generate()
    token = key.client_assertion("acme", "https://gw/v1/oauth/token")
    public = jwt.PyJWK(key.jwk()).key
    claims = jwt.decode(token, public, algorithms=["ES256"], audience="https://gw/v1/oauth/token")
    assert claims["iss"] == claims["sub"] == "acme"
    assert claims["exp"] - claims["iat"] <= 300
    assert jwt.get_unverified_header(token)["kid"] == key.kid
    assert key.client_assertion("acme", "x") != key.client_assertion("acme", "x")  # unique jti
