"""Payload sealing: epoch keys kept apart from the database, destroyed once delivered."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.config import RelayConfig
from gateway.service.consent import ConsentRegistry
from gateway.service.delivery import DeliveryWorker
from gateway.service.events import EventQueue
from gateway.service.payload_seal import GRACE_EPOCHS, PayloadSealer, PayloadUnreadable
from gateway.store import Tx, messages, open_store, outbox
from gateway.store.messages import Envelope
from tests.service.fakes import RecordingAudit
from tests.service.test_outbox_replicas import RecordingPlatform

EPOCH = 60_000
T = 1_000 * EPOCH + 5  # in epoch 1000


async def test_a_sealed_payload_opens_only_with_its_message_id(tmp_path: Path) -> None:
    sealer = PayloadSealer(tmp_path / "keys")
    sealed = await sealer.seal("gw_1", b'{"native":[{"text":"secret"}]}', T)
    assert sealed.startswith("s1.1000.") and "secret" not in sealed
    assert await sealer.open("gw_1", sealed) == b'{"native":[{"text":"secret"}]}'
    with pytest.raises(PayloadUnreadable):
        await sealer.open("gw_2", sealed)  # moved to another row: refused
    assert oct((tmp_path / "keys" / "1000.key").stat().st_mode & 0o777) == "0o600"


async def test_a_payload_stored_before_sealing_is_read_as_it_is(tmp_path: Path) -> None:
    assert await PayloadSealer(tmp_path).open("gw_1", '{"state":"on"}') == b'{"state":"on"}'


async def test_replicas_sharing_the_data_dir_open_each_others_payloads(tmp_path: Path) -> None:
    a, b = PayloadSealer(tmp_path), PayloadSealer(tmp_path)
    sealed_a = await a.seal("gw_a", b"from a", T)
    sealed_b = await b.seal("gw_b", b"from b", T + 1)  # the same epoch: the same key
    assert await b.open("gw_a", sealed_a) == b"from a"
    assert await a.open("gw_b", sealed_b) == b"from b"
    assert os.listdir(tmp_path) == ["1000.key"]


async def test_a_key_lives_while_its_epoch_has_pending_messages_or_may_get_more(
    tmp_path: Path,
) -> None:
    sealer = PayloadSealer(tmp_path)
    old = await sealer.seal("gw_old", b"old", T)
    new = await sealer.seal("gw_new", b"new", T + 3 * EPOCH)
    far = T + 10 * EPOCH
    assert await sealer.destroy_delivered(T, far) == 0  # gw_old still waits
    assert await sealer.destroy_delivered(T + 3 * EPOCH, far) == 1  # only gw_new waits
    assert sorted(os.listdir(tmp_path)) == ["1003.key"]
    with pytest.raises(PayloadUnreadable, match="payload_key_destroyed"):
        await sealer.open("gw_old", old)
    # Nothing waits, yet an epoch within the grace may still get a late commit.
    assert await sealer.destroy_delivered(None, T + (3 + GRACE_EPOCHS) * EPOCH) == 0
    assert await sealer.open("gw_new", new) == b"new"
    assert await sealer.destroy_delivered(None, T + (4 + GRACE_EPOCHS) * EPOCH) == 1
    assert os.listdir(tmp_path) == []
    with pytest.raises(PayloadUnreadable):
        await PayloadSealer(tmp_path).open("gw_new", new)


async def test_destroying_leaves_other_files_alone(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    sealer = PayloadSealer(tmp_path)
    await sealer.seal("gw_1", b"p", T)
    assert await sealer.destroy_delivered(None, T + 10 * EPOCH) == 1
    assert os.listdir(tmp_path) == ["notes.txt"]
    assert await PayloadSealer(tmp_path / "missing").destroy_delivered(None, T) == 0


async def test_a_message_whose_key_is_gone_is_dead_lettered(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path / 'g.db'}")
    sealer = PayloadSealer(tmp_path / "keys")
    log: list[tuple[str, str, str]] = []
    queue = EventQueue(store)
    worker = DeliveryWorker(
        store, RecordingPlatform("r", log), ConsentRegistry(store, queue), queue,
        RelayConfig(), audit_events=RecordingAudit(), sealer=sealer,
    )  # fmt: skip
    envelope = Envelope(
        id="gw_1", client_id="acme", client_msg_id="m-1", digest="d", kind="message",
        service="whatsapp", sender="mimi://acme/u/a", recipient="mimi://whatsapp/u/1",
        sent_at=T, size=1,
    )  # fmt: skip
    sealed = await sealer.seal("gw_1", b'{"native":[]}', T)

    async def accept(tx: Tx) -> None:
        await messages.add_outbound(tx, envelope, sealed, T)
        await outbox.enqueue(tx, "gw_1", "c", "whatsapp", T)

    try:
        await store.write("accept", accept)
        await sealer.destroy_delivered(None, T + 10 * EPOCH)  # as if destroyed in error
        assert await worker.run_once()
        assert log == []
        assert await outbox.dead_letter_reason(store, "gw_1") == "payload_key_destroyed"
        assert await outbox.stats(store) == (0, None)
    finally:
        await store.close()
