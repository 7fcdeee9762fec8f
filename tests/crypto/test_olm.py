"""Real vodozemac sessions between two parties, as the SDK and the sandbox use them."""

from __future__ import annotations

import os

import pytest

from gateway.crypto import (
    DecryptionFailed,
    MediaIntegrityError,
    MediaKey,
    OlmCiphertext,
    OlmParty,
    decrypt_media,
    encrypt_media,
    verify_key_signature,
)


def start(alice: OlmParty, bob: OlmParty, text: bytes) -> OlmCiphertext:
    bundle = bob.key_bundle(1)
    (otk,) = bundle.one_time_keys.values()
    return alice.encrypt(bob.identity_key, text, one_time_key=otk.key)


def test_key_bundle_signatures_verify() -> None:
    party = OlmParty()
    bundle = party.key_bundle(3, fallback=True)
    assert len(bundle.one_time_keys) == 3
    assert bundle.fallback_key is not None
    for signed in [*bundle.one_time_keys.values(), bundle.fallback_key]:
        assert verify_key_signature(bundle.signing_key, signed.key, signed.signature)
    other = OlmParty()
    signed = next(iter(bundle.one_time_keys.values()))
    assert not verify_key_signature(other.signing_key, signed.key, signed.signature)
    assert not verify_key_signature(bundle.signing_key, signed.key + "x", signed.signature)
    assert not verify_key_signature("not base64!", signed.key, signed.signature)
    assert not verify_key_signature(bundle.signing_key, signed.key, "AAAA")
    # Published keys are not handed out again.
    assert party.key_bundle(0).one_time_keys == {}


def test_conversation_both_ways_and_wire_round_trip() -> None:
    alice, bob = OlmParty(), OlmParty()
    first = start(alice, bob, b"hello bob")
    assert first.type == 0
    wire = first.to_wire()
    assert wire["protocol"] == "olm.v1"
    parsed = OlmCiphertext.from_wire(wire["type"], wire["body"], wire["sender_key"])
    assert bob.decrypt(parsed) == b"hello bob"
    reply = bob.encrypt(alice.identity_key, b"hi alice")
    assert alice.decrypt(reply) == b"hi alice"
    again = alice.encrypt(bob.identity_key, b"second")
    assert again.type == 1
    assert bob.decrypt(again) == b"second"


def test_several_pre_key_messages_before_a_reply() -> None:
    alice, bob = OlmParty(), OlmParty()
    one = start(alice, bob, b"one")
    two = alice.encrypt(bob.identity_key, b"two")
    assert two.type == 0
    assert bob.decrypt(one) == b"one"
    assert bob.decrypt(two) == b"two"


def test_state_survives_pickling_and_wrong_key_is_refused() -> None:
    alice, bob = OlmParty(), OlmParty()
    key = os.urandom(32)
    bob.decrypt(start(alice, bob, b"x"))
    restored = OlmParty.from_pickle(bob.pickle(key), key)
    assert restored.identity_key == bob.identity_key
    assert restored.decrypt(alice.encrypt(bob.identity_key, b"after restart")) == b"after restart"
    with pytest.raises(DecryptionFailed):
        OlmParty.from_pickle(bob.pickle(key), os.urandom(32))


def test_garbage_replays_and_strangers_fail_cleanly() -> None:
    alice, bob, eve = OlmParty(), OlmParty(), OlmParty()
    first = start(alice, bob, b"x")
    assert bob.decrypt(first) == b"x"
    with pytest.raises(DecryptionFailed):
        OlmCiphertext.from_wire(0, "not*base64", alice.identity_key)
    with pytest.raises(DecryptionFailed):
        bob.decrypt(OlmCiphertext(type=1, body=b"garbage", sender_key=alice.identity_key))
    with pytest.raises(DecryptionFailed):
        eve.decrypt(first)  # not for eve: unknown one-time key
    with pytest.raises(DecryptionFailed):
        bob.decrypt(OlmCiphertext(type=1, body=first.body, sender_key="bad key"))
    normal = alice.encrypt(bob.identity_key, b"y")
    with pytest.raises(DecryptionFailed):
        eve.decrypt(OlmCiphertext(type=1, body=normal.body, sender_key=alice.identity_key))


def test_encrypt_without_session_needs_a_key() -> None:
    with pytest.raises(ValueError, match="one-time key"):
        OlmParty().encrypt(OlmParty().identity_key, b"x")


def test_media_round_trip_and_tampering() -> None:
    data = os.urandom(5000)
    ciphertext, key = encrypt_media(data)
    assert data not in ciphertext
    assert key.size == len(ciphertext)
    assert decrypt_media(ciphertext, key) == data
    flipped = bytes([ciphertext[0] ^ 1]) + ciphertext[1:]
    with pytest.raises(MediaIntegrityError, match="hash"):
        decrypt_media(flipped, key)
    import hashlib

    forged = MediaKey(key=os.urandom(32), nonce=key.nonce, sha256=key.sha256, size=key.size)
    with pytest.raises(MediaIntegrityError, match="authenticate"):
        decrypt_media(ciphertext, forged)
    assert hashlib.sha256(ciphertext).digest() == key.sha256


def test_a_pickle_holds_every_session_as_it_is_now() -> None:
    """Sessions unchanged since the last pickle are not pickled again; one that moved is."""
    alice, carol, bob = OlmParty(), OlmParty(), OlmParty()
    key = os.urandom(32)
    bob.decrypt(start(alice, bob, b"a1"))
    bob.decrypt(start(carol, bob, b"c1"))
    alice.decrypt(bob.encrypt(alice.identity_key, b"r1"))
    bob.pickle(key)  # both sessions pickled as they are here
    a2 = alice.encrypt(bob.identity_key, b"a2")
    assert a2.type == 1
    assert bob.decrypt(a2) == b"a2"  # alice's session moves; carol's does not
    restored = OlmParty.from_pickle(bob.pickle(key), key)
    with pytest.raises(DecryptionFailed):
        restored.decrypt(a2)  # its message key was used: the pickle is of the moved session
    assert restored.decrypt(carol.encrypt(bob.identity_key, b"c2")) == b"c2"
    assert restored.decrypt(alice.encrypt(bob.identity_key, b"a3")) == b"a3"
    other_key = os.urandom(32)  # pickled under another key: nothing cached is reused
    assert OlmParty.from_pickle(bob.pickle(other_key), other_key).identity_key == bob.identity_key


def test_a_pickle_holds_the_account_as_it_is_now() -> None:
    """The account is pickled again once an inbound session takes one of its one-time keys."""
    dave, bob = OlmParty(), OlmParty()
    key = os.urandom(32)
    (otk,) = bob.key_bundle(1).one_time_keys.values()
    bob.pickle(key)  # the account pickled with its one-time key unused
    first = dave.encrypt(bob.identity_key, b"d1", one_time_key=otk.key)
    assert bob.decrypt(first) == b"d1"
    restored = OlmParty.from_pickle(bob.pickle(key), key)
    with pytest.raises(DecryptionFailed):
        restored.decrypt(first)  # a replay: the one-time key is gone from the account
