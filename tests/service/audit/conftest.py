"""A real audit database on disk: records appended through AuditLog, signed checkpoints."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.service.audit.chain import write_checkpoint
from gateway.service.audit.checkpoints import Signer, keyring, load_signer
from gateway.service.audit.log import AuditLog
from gateway.service.audit.pseudonym import load_pseudonymizer
from gateway.service.audit.verify import Keys, Outcome, verify_database
from gateway.service.principal import Principal
from gateway.store import Tx, open_store

PROVIDER = Principal(kind="provider", client_id="acme")


@dataclass
class AuditDb:
    path: Path
    data_dir: Path
    signer: Signer

    @property
    def url(self) -> str:
        return f"sqlite:///{self.path}"

    @property
    def keys(self) -> Keys:
        return keyring([self.signer.public])

    def sql(self, *statements: str) -> None:
        """Tamper with the file directly, as an attacker with disk access would."""
        with sqlite3.connect(self.path) as conn:
            for statement in statements:
                conn.execute(statement)

    async def verify(self, keys: Keys | None = None) -> Outcome:
        store = await open_store(self.url, readonly=True)
        try:
            return await verify_database(store, keys or self.keys)
        finally:
            await store.close()


async def fill(data_dir: Path, path: Path, records: int, checkpoint_at: tuple[int, ...]) -> Signer:
    """Append `records` events, signing a checkpoint after each seq in `checkpoint_at`."""
    signer = load_signer(data_dir)
    assert signer is not None
    store = await open_store(f"sqlite:///{path}")
    log = AuditLog(store, chain_id="main", pseudonymize=load_pseudonymizer(data_dir))

    async def checkpoint(tx: Tx) -> None:
        await write_checkpoint(tx, "main", signer)

    try:
        for i in range(1, records + 1):
            await log.record_event(
                action="message.deliver",
                actor=PROVIDER,
                subjects=[f"mimi://whatsapp/u/49151{i:07d}"],
                attrs={"service": "whatsapp", "kind": "text", "direction": "to_platform"},
                status=200,
            )
            if i in checkpoint_at:
                await store.write("checkpoint", checkpoint)
    finally:
        await store.close()
    return signer


@pytest.fixture
def make_audit_db(tmp_path: Path) -> Callable[..., object]:
    async def make(records: int = 30, checkpoint_at: tuple[int, ...] = (10, 20)) -> AuditDb:
        data_dir = tmp_path / "data"
        path = data_dir / "gateway.db"
        signer = await fill(data_dir, path, records, checkpoint_at)
        return AuditDb(path=path, data_dir=data_dir, signer=signer)

    return make
