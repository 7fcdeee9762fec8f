"""Key transparency in the SDK (DESIGN §4.12): no key is used unless the signed log holds it.

Every claimed bundle must carry an inclusion proof of a leaf that commits to the peer and holds
exactly the bundle's identity and signing keys, under a tree head signed by the log's key (from
the reference offer, or pinned by the caller). Every head must be consistent with the last one
this SDK accepted (RFC 9162 consistency proof), so the log it is shown only ever grows, and a
peer's key version never goes back. Anything else raises `KeyTransparencyError` and the key is
not used.

Monitoring: `monitor(user_uri)` reads the log's history of one of this provider's own users and
reports each version whose keys this SDK never published (an `UnpublishedKeyChange`, also
passed to every callable in `listeners`): someone else put keys in that user's name.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.crypto.transparency import (
    Head,
    consistency_problem,
    head_problem,
    inclusion_problem,
    keyring,
    public_key_from_b64,
)
from gateway.store import sdk_kt_state as kt_state

Get = Callable[[str, dict[str, str]], Awaitable[Any]]  # GET path with query -> JSON


class KeyTransparencyError(Exception):
    """The gateway handed out a key or head that the key transparency log does not vouch for."""


class UnpublishedKeyChange(msgspec.Struct, frozen=True, kw_only=True):
    """The log holds keys for one of our users that this SDK never published."""

    type: str = "unpublished_key_change"
    user: str
    version: int
    leaf_index: int
    identity_key: str
    signing_key: str


class TransparencyChecker:
    """Checks bundles and heads against the log; remembers the last head in the state file."""

    def __init__(
        self, db: sqlite3.Connection, get: Get, *, public_keys: list[str] | None = None
    ) -> None:
        self.db = db
        self.get = get
        self._pinned = public_keys
        self._keys: dict[str, Ed25519PublicKey] | None = None
        self.listeners: list[Callable[[UnpublishedKeyChange], None]] = []
        kt_state.prepare(db)

    async def keys(self) -> dict[str, Ed25519PublicKey]:
        """The head signing keys: pinned ones, else the reference offer's (current and retired)."""
        if self._keys is None:
            texts = self._pinned
            if texts is None:
                offer = await self.get("/.well-known/dma-interop", {})
                kt = offer.get("key_transparency") or {}
                texts = [kt.get("public_key", ""), *kt.get("previous_public_keys", [])]
            try:
                self._keys = keyring([public_key_from_b64(t) for t in texts if t])
            except ValueError as exc:
                raise KeyTransparencyError(f"unusable log public key: {exc}") from None
            if not self._keys:
                raise KeyTransparencyError("the gateway publishes no key transparency key")
        return self._keys

    def last_head(self) -> Head | None:
        text = kt_state.last_head(self.db)
        return None if text is None else msgspec.json.decode(text, type=Head)

    async def check_head(self, head: Head) -> None:
        """Accept `head` only if validly signed and consistent with the last head accepted."""
        problem = head_problem(head, await self.keys())
        if problem is not None:
            raise KeyTransparencyError(problem)
        last = self.last_head()
        if last is not None:
            old, new = (last, head) if last.tree_size <= head.tree_size else (head, last)
            proof: list[str] = []
            if old.tree_size != new.tree_size:
                answer = await self.get(
                    "/v1/key-transparency/consistency",
                    {"from": str(old.tree_size), "to": str(new.tree_size)},
                )
                proof = answer.get("proof", []) if isinstance(answer, dict) else []
            problem = consistency_problem(old, new, proof)
            if problem is not None:
                raise KeyTransparencyError(problem)
        if last is None or head.tree_size > last.tree_size:
            kt_state.save_head(self.db, msgspec.json.encode(head).decode())

    async def check_bundle(self, peer: str, bundle: dict[str, Any]) -> None:
        """Refuse a claimed bundle whose keys the signed log does not hold for `peer`."""
        transparency = bundle.get("transparency")
        if not isinstance(transparency, dict):
            raise KeyTransparencyError(f"the keys of {peer} come without a transparency proof")
        if bundle.get("user") != peer:
            raise KeyTransparencyError(f"asked for the keys of {peer}, got another user's")
        problem, leaf, head = inclusion_problem(
            peer, bundle["identity_key"], bundle["signing_key"], transparency, await self.keys()
        )
        if problem is not None:
            raise KeyTransparencyError(f"refusing the keys of {peer}: {problem}")
        assert leaf is not None and head is not None
        await self.check_head(head)
        if leaf.version < kt_state.peer_version(self.db, peer):
            raise KeyTransparencyError(
                f"refusing the keys of {peer}: version {leaf.version} is older than one seen"
            )
        kt_state.set_peer_version(self.db, peer, leaf.version)

    def published(self, user_uri: str, identity_key: str, signing_key: str) -> None:
        """Remember keys this SDK publishes for its own user (monitoring compares with them)."""
        kt_state.add_published(self.db, user_uri, identity_key, signing_key)

    async def monitor_all(self) -> list[UnpublishedKeyChange]:
        """`monitor` every local user this SDK published keys for."""
        alerts: list[UnpublishedKeyChange] = []
        for user_uri in kt_state.published_users(self.db):
            alerts += await self.monitor(user_uri)
        return alerts

    async def monitor(self, user_uri: str) -> list[UnpublishedKeyChange]:
        """Check the log's history of our own user; report versions we did not publish."""
        answer = await self.get("/v1/key-transparency/history", {"user": user_uri})
        try:
            head = msgspec.convert(answer["head"], Head)
            versions = answer["versions"]
        except (KeyError, TypeError, msgspec.ValidationError) as exc:
            raise KeyTransparencyError(f"malformed key history: {exc}") from None
        await self.check_head(head)
        alerts: list[UnpublishedKeyChange] = []
        for version in versions:
            entry = {**version, "salt": answer.get("salt"), "head": answer["head"]}
            leaf = _leaf_of(entry)
            problem, _, _ = inclusion_problem(
                user_uri, leaf.get("identity_key", ""), leaf.get("signing_key", ""), entry,
                await self.keys(),
            )  # fmt: skip
            if problem is not None:
                raise KeyTransparencyError(f"key history of {user_uri}: {problem}")
            keys = (leaf["identity_key"], leaf["signing_key"])
            if kt_state.was_published(self.db, user_uri, *keys):
                continue
            if not kt_state.mark_reported(self.db, user_uri, int(version["leaf_index"])):
                continue
            alert = UnpublishedKeyChange(
                user=user_uri, version=leaf["version"], leaf_index=version["leaf_index"],
                identity_key=keys[0], signing_key=keys[1],
            )  # fmt: skip
            alerts.append(alert)
            for listener in self.listeners:
                listener(alert)
        return alerts


def _leaf_of(entry: dict[str, Any]) -> dict[str, Any]:
    try:
        leaf = msgspec.json.decode(str(entry["leaf"]).encode())
    except (KeyError, msgspec.DecodeError):
        raise KeyTransparencyError("malformed key history leaf") from None
    if not isinstance(leaf, dict):
        raise KeyTransparencyError("malformed key history leaf")
    return leaf
