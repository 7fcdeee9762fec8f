from gateway.sdk.groups import GroupCrypto

G = "mimi://whatsapp.example/g/1"


def test_rotation_per_epoch_and_decrypt():
    alice, bob, carol = GroupCrypto("ka"), GroupCrypto("kb"), GroupCrypto("kc")
    enc, share = alice.encrypt(G, 0, b"hello-0")
    assert share is not None
    assert bob.import_room_key(G, share) == enc["session_id"]
    assert carol.import_room_key(G, share) == enc["session_id"]
    assert bob.decrypt(G, enc) == b"hello-0"
    enc2, share2 = alice.encrypt(G, 0, b"again")
    assert share2 is None and enc2["session_id"] == enc["session_id"]
    assert carol.decrypt(G, enc2) == b"again"
    # carol removed: epoch 1 rotates; only bob gets the new key
    enc3, share3 = alice.encrypt(G, 1, b"after-removal")
    assert share3 is not None and enc3["session_id"] != enc["session_id"]
    bob.import_room_key(G, share3)
    assert bob.decrypt(G, enc3) == b"after-removal"
    assert carol.decrypt(G, enc3) is None


def test_rejects_wrong_group_and_garbage():
    alice, bob = GroupCrypto("ka"), GroupCrypto("kb")
    enc, share = alice.encrypt(G, 0, b"x")
    assert share is not None
    assert bob.import_room_key("mimi://whatsapp.example/g/2", share) is None
    assert bob.import_room_key(G, b"not json") is None
    assert bob.decrypt(G, enc) is None
    assert bob.decrypt(G, {"protocol": "olm.v1"}) is None
