"""A real audit database: records appended through AuditLog, signed checkpoints.

It is a SQLite file in the data dir (where the CLI looks by default) unless a test module
overrides `audit_db_url`, e.g. with `store_url` to run on every backend.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

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
    url: str
    data_dir: Path
    signer: Signer

    @property
    def keys(self) -> Keys:
        return keyring([self.signer.public])

    def sql(self, *statements: str) -> None:
        """Tamper with the database directly, as an attacker with access to it would."""
        for statement in statements:
            self.run(statement)

    def run(self, statement: str, *params: Any) -> list[tuple[Any, ...]]:
        """Run one statement (`?` placeholders) outside the gateway; return its rows."""
        if self.url.startswith("sqlite:///"):
            conn = sqlite3.connect(self.url[len("sqlite:///") :])
            try:
                with conn:
                    return conn.execute(statement, params).fetchall()
            finally:
                conn.close()
        import psycopg

        parts = urlsplit(self.url)
        query = dict(parse_qsl(parts.query))
        options = f"-c search_path={query.pop('search_path')}"
        server = parts._replace(query=urlencode(query)).geturl()
        with psycopg.connect(server, options=options, autocommit=True) as conn:
            cursor = conn.execute(statement.replace("?", "%s"), params or None)
            return cursor.fetchall() if cursor.description else []

    async def verify(self, keys: Keys | None = None) -> Outcome:
        store = await open_store(self.url, readonly=True)
        try:
            return await verify_database(store, keys or self.keys)
        finally:
            await store.close()


async def fill(data_dir: Path, url: str, records: int, checkpoint_at: tuple[int, ...]) -> Signer:
    """Append `records` events, signing a checkpoint after each seq in `checkpoint_at`."""
    signer = load_signer(data_dir)
    assert signer is not None
    store = await open_store(url)
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
def audit_db_url(tmp_path: Path) -> str:
    """Where `make_audit_db` writes: the data dir's SQLite file, the CLI's default."""
    return f"sqlite:///{tmp_path / 'data' / 'gateway.db'}"


@pytest.fixture
def make_audit_db(tmp_path: Path, audit_db_url: str) -> Callable[..., object]:
    async def make(records: int = 30, checkpoint_at: tuple[int, ...] = (10, 20)) -> AuditDb:
        data_dir = tmp_path / "data"
        signer = await fill(data_dir, audit_db_url, records, checkpoint_at)
        return AuditDb(url=audit_db_url, data_dir=data_dir, signer=signer)

    return make
