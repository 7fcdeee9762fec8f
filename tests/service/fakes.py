"""Stand-ins for the collaborators services require, for tests of one service alone."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.crypto.transparency import HeadSigner
from gateway.platforms.base import ClaimedBundle
from gateway.service.event_types import Event
from gateway.service.key_directory import KeyDirectory
from gateway.service.transparency import KeyTransparency
from gateway.store import Store, Tx


class RecordingQueue:
    """Stands in for the relay's EventQueue: events appended inside the unit, by provider."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    async def append_in(self, tx: Tx, client_id: str, event: Event) -> None:
        await tx.fetchval("SELECT 1")  # inside the unit, like the real queue
        self.events.append((client_id, msgspec.to_builtins(event)))  # as the queue stores it


class RecordingAudit:
    """Stands in for the audit log's internal events: (action, subjects) in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, list[str]]] = []

    async def event_in(
        self, tx: Tx, *, action: str, subjects: Iterable[str] = (), **attrs: Any
    ) -> None:
        self.events.append((action, list(subjects)))


async def no_platform_users(uri: str) -> ClaimedBundle | None:
    """A connector without users."""
    return None


async def nobody_consents(uri: str, client_id: str) -> bool:
    return False


async def everyone_reachable(uri: str, client_id: str) -> bool:
    """A reach policy that lets every provider reach every user (mechanics of one service)."""
    return True


def key_log(store: Store) -> KeyTransparency:
    """A real key transparency log on `store`, its heads signed by a fresh key."""
    signer = HeadSigner(Ed25519PrivateKey.generate())
    return KeyTransparency(
        store, signer, head_interval_s=60, audit_events=RecordingAudit(), retired_keys=[]
    )


def key_directory(store: Store, **given: Any) -> KeyDirectory:
    """A key directory whose collaborators are fakes unless `given`."""
    defaults: dict[str, Any] = {
        "low_threshold": 1,
        "max_one_time_keys": 100,
        "platform_keys": no_platform_users,
        "consent": nobody_consents,
        "events": RecordingQueue(),
        "audit_events": RecordingAudit(),
    }
    if "transparency" not in given:
        defaults["transparency"] = key_log(store)
    return KeyDirectory(store, **(defaults | given))
