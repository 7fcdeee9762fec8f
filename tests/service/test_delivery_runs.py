"""A conversation's claimed run stops at a retryable failure: what follows waits for it."""

from __future__ import annotations

from pathlib import Path

from gateway.config import RelayConfig
from gateway.platforms.base import Outgoing, RetryableDelivery
from gateway.service.consent import ConsentRegistry
from gateway.service.delivery import DeliveryWorker
from gateway.service.events import EventQueue
from gateway.store import open_store
from tests.service.fakes import RecordingAudit
from tests.service.test_outbox_replicas import RecordingPlatform, enqueue, unused_sealer


class FailsOnce(RecordingPlatform):
    """Refuses one message once, as a platform briefly overloaded would."""

    def __init__(self, refuse: str, log: list[tuple[str, str, str]]) -> None:
        super().__init__("only", log)
        self.refuse: str | None = refuse

    async def deliver(self, item: Outgoing) -> None:
        if item.id == self.refuse:
            self.refuse = None
            raise RetryableDelivery("busy")
        await super().deliver(item)


async def test_a_retry_in_the_middle_of_a_run_keeps_the_order(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path / 'g.db'}")
    log: list[tuple[str, str, str]] = []
    config = RelayConfig(retry_base_s=0.01, retry_max_s=0.02, claim_per_conversation=10)
    queue = EventQueue(store)
    worker = DeliveryWorker(store, FailsOnce("gw_0_2", log), ConsentRegistry(store, queue),
                            queue, config, audit_events=RecordingAudit(),
                            sealer=unused_sealer())  # fmt: skip
    try:
        order = await enqueue(store, conversations=1, per_conversation=5)
        assert await worker.run_once()  # one run: 0, 1 delivered; 2 refused; 3, 4 released
        assert [mid for _, _, mid in log] == ["gw_0_0", "gw_0_1"]
        leased = await store.fetchval("SELECT COUNT(*) FROM relay_outbox WHERE lease_until > 0")
        assert leased == 0
        for _ in range(100):
            if not await store.fetchval("SELECT COUNT(*) FROM relay_outbox"):
                break
            await worker.run_once()
        assert [mid for _, _, mid in log] == order["mimi://whatsapp/u/0"]
    finally:
        await store.close()
