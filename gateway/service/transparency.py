"""Key transparency (DESIGN §4.12): the append-only log of key changes and its signed heads.

The key directory calls `record_in` inside the transaction of every key change it makes or
sees, so a key is never handed out before its leaf is durable. Heads are signed every
`kt.head_interval_s`, at shutdown, and on demand when a claim needs a head that covers a leaf
newer than the last signed one. The tree's hashes are cached in memory and read incrementally.

The signing key is `<data dir>/kt-signing.key` (PKCS#8 PEM, 0600), like the audit key. Rotation
(`dma-gateway kt rotate-key`) moves its public half to `<data dir>/kt-retired-keys/<key id>.pub`,
which the reference offer keeps listing so that heads signed before stay verifiable.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
from pathlib import Path
from typing import Any, Protocol

import structlog
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway import secretfiles
from gateway.clock import now_ms
from gateway.crypto.merkle import MerkleTree, leaf_hash
from gateway.crypto.transparency import (
    SALT_BYTES,
    Head,
    HeadSigner,
    b64,
    leaf_data,
    parse_leaf,
    user_commitment,
)
from gateway.errors import ValidationFailed
from gateway.service.periodic import Periodic
from gateway.store import Store, Tx, is_lock_not_available
from gateway.store import transparency as kt_store

log = structlog.get_logger(__name__)

KEY_FILE = "kt-signing.key"
LOCKED_ATTEMPTS = 100
RETIRED_DIR = "kt-retired-keys"


class AuditEvents(Protocol):
    async def event_in(self, tx: Tx, *, action: str, attrs: Any = None) -> Any: ...


def load_head_signer(data_dir: Path) -> HeadSigner:
    """The head signer on <data_dir>/kt-signing.key, made on first start."""

    def make() -> bytes:
        return Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    path = data_dir / KEY_FILE
    pem, _ = secretfiles.load_or_create(path, make)
    private = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(private, Ed25519PrivateKey):
        raise ValueError(f"{path} does not hold an Ed25519 private key")
    return HeadSigner(private)


def retired_public_keys(data_dir: Path) -> list[str]:
    """The base64 public keys of rotated-out head signing keys, by file name."""
    folder = data_dir / RETIRED_DIR
    if not folder.is_dir():
        return []
    return [p.read_text(encoding="utf-8").strip() for p in sorted(folder.glob("*.pub"))]


def rotate_key(data_dir: Path) -> tuple[str, str]:
    """Retire the head signing key (its public half kept) and make a new one: (old, new) ids."""
    old = load_head_signer(data_dir)
    folder = data_dir / RETIRED_DIR
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{old.key_id}.pub").write_text(old.public_b64 + "\n", encoding="utf-8")
    (data_dir / KEY_FILE).unlink()
    return old.key_id, load_head_signer(data_dir).key_id


def head_json(head: Head | kt_store.StoredHead) -> dict[str, Any]:
    return {
        "tree_size": head.tree_size,
        "root_hash": head.root_hash,
        "timestamp": head.timestamp,
        "key_id": head.key_id,
        "signature": head.signature,
    }


class KeyTransparency:
    """The log: appends inside key changes, signs heads, answers proofs."""

    def __init__(
        self,
        store: Store,
        signer: HeadSigner,
        *,
        head_interval_s: float,
        audit_events: AuditEvents,
        retired_keys: list[str],
    ) -> None:
        self.store = store
        self.signer = signer
        self.head_interval_s = head_interval_s
        self.audit_events = audit_events
        self.retired_keys = retired_keys
        self.tree = MerkleTree()
        self._sync_lock = asyncio.Lock()
        self._periodic = Periodic(self._tick, head_interval_s, "kt_heads")

    # -- appending (inside the key directory's write units) ---------------------------------

    async def record_in(self, tx: Tx, user_uri: str, identity_key: str, signing_key: str) -> None:
        """Log `user_uri`'s keys when new to the log or changed (else nothing), in `tx`.

        The leaf is durable with the key change; it gets its index from `sequence` right after,
        which every head and proof runs first.
        """
        logged = await kt_store.user(tx, user_uri)
        if logged is not None and (logged.identity_key, logged.signing_key) == (
            identity_key,
            signing_key,
        ):
            return  # the common case (every claim) costs one read
        bumped = await kt_store.bump_user(
            tx, user_uri, secrets.token_bytes(SALT_BYTES), identity_key, signing_key
        )
        if bumped is None:
            return  # another transaction logged these keys meanwhile
        salt, version = bumped
        user_hash = user_commitment(salt, user_uri)
        at = now_ms()
        data = leaf_data(user_hash, identity_key, signing_key, version, at)
        await kt_store.add_pending(tx, user_hash, data, leaf_hash(data), at)
        tx.on_commit(lambda: log.info("kt_leaf_logged", version=version))

    async def sequence(self) -> None:
        """Give every pending leaf its index (whichever replica wrote it)."""
        while await kt_store.has_pending(self.store):
            for _ in range(LOCKED_ATTEMPTS):
                try:
                    await self.store.write("kt_sequence", kt_store.sequence_pending)
                    break
                except Exception as exc:
                    if not is_lock_not_available(exc):
                        raise
                # Another replica is sequencing: it may take ours too; look again shortly.
                await asyncio.sleep(random.uniform(0.005, 0.02))
            else:
                return

    # -- the tree --------------------------------------------------------------------------

    async def sync(self) -> int:
        """Sequence pending leaves, read those appended since the last call; the tree size."""
        await self.sequence()
        async with self._sync_lock:
            size = await kt_store.size(self.store)
            while len(self.tree) < size:
                end = min(size, len(self.tree) + kt_store.PAGE)
                for hash_ in await kt_store.leaf_hashes(self.store, len(self.tree), end):
                    self.tree.append(hash_)
            return len(self.tree)

    async def sign_head(self) -> Head:
        """Sign and store a head of the whole tree as it is now (audited)."""
        size = await self.sync()
        head = self.signer.sign(size, self.tree.root(size), now_ms())
        stored = kt_store.StoredHead(**head_json(head))

        async def unit(tx: Tx) -> None:
            await kt_store.put_head(tx, stored)
            await self.audit_events.event_in(
                tx, action="kt.head_signed", attrs={"tree_size": size, "key_id": head.key_id}
            )

        await self.store.write("kt_sign_head", unit)
        log.info("kt_head_signed", tree_size=size)
        return head

    async def latest_head(self) -> kt_store.StoredHead:
        """The newest signed head; one is signed now when there is none yet."""
        head = await kt_store.latest_head(self.store)
        if head is None:
            return kt_store.StoredHead(**head_json(await self.sign_head()))
        return head

    async def _head_covering(self, index: int) -> kt_store.StoredHead:
        head = await self.latest_head()
        if head.tree_size <= index:  # the leaf is newer than the last head: sign one now
            return kt_store.StoredHead(**head_json(await self.sign_head()))
        return head

    async def _tick(self) -> None:
        head = await kt_store.latest_head(self.store)
        size = await self.sync()
        if head is None and size == 0:
            return  # nothing to sign yet: the first claim or change signs the first head
        fresh = head is not None and now_ms() - head.timestamp < self.head_interval_s * 500
        if fresh and head is not None and head.tree_size == size:
            return  # another replica (or the last run's shutdown) signed this tree just now
        await self.sign_head()

    def start(self) -> None:
        """Sign heads every interval from now on."""
        self._periodic.start()

    async def stop(self) -> None:
        """Stop the interval, then sign a last head if the tree grew since the newest one."""
        await self._periodic.stop()
        with contextlib.suppress(Exception):
            head = await kt_store.latest_head(self.store)
            if await self.sync() > (0 if head is None else head.tree_size):
                await self.sign_head()

    # -- proofs ----------------------------------------------------------------------------

    async def _proofs(
        self, leaves: list[kt_store.StoredLeaf], head: kt_store.StoredHead
    ) -> list[dict[str, Any]]:
        await self.sync()
        return [
            {
                "leaf_index": leaf.leaf_index,
                "leaf": leaf.data,
                "inclusion_proof": [
                    b64(h) for h in self.tree.inclusion_proof(leaf.leaf_index, head.tree_size)
                ],
            }
            for leaf in leaves
        ]

    async def proof_for(
        self, user_uri: str, identity_key: str, signing_key: str
    ) -> dict[str, Any] | None:
        """The `transparency` member of a claim: the newest leaf of `user_uri` holding these
        keys, its inclusion proof and a signed head covering it; None when none holds them."""
        await self.sequence()  # the leaf of a change just made may still wait for its index
        logged = await kt_store.user(self.store, user_uri)
        if logged is None:
            return None
        found = None
        for leaf in await kt_store.user_leaves(self.store, user_commitment(logged.salt, user_uri)):
            parsed = parse_leaf(leaf.data)
            if (parsed.identity_key, parsed.signing_key) == (identity_key, signing_key):
                found = leaf
        if found is None:
            return None
        head = await self._head_covering(found.leaf_index)
        (proof,) = await self._proofs([found], head)
        return {**proof, "salt": b64(logged.salt), "head": head_json(head)}

    async def history(self, user_uri: str) -> dict[str, Any] | None:
        """Every version of `user_uri`'s keys with inclusion proofs, or None if never logged."""
        await self.sequence()
        logged = await kt_store.user(self.store, user_uri)
        if logged is None:
            return None
        leaves = await kt_store.user_leaves(self.store, user_commitment(logged.salt, user_uri))
        head = await self._head_covering(max(leaf.leaf_index for leaf in leaves))
        return {
            "user": user_uri,
            "salt": b64(logged.salt),
            "versions": await self._proofs(leaves, head),
            "head": head_json(head),
        }

    async def consistency(self, old: int, new: int) -> list[str]:
        """RFC 9162 consistency proof between the trees of `old` and `new` leaves."""
        size = await self.sync()
        if not 0 <= new <= size:
            raise ValidationFailed(f"The log holds {size} leaves.", field="to")
        if not 0 <= old <= new:
            raise ValidationFailed("`from` must be between 0 and `to`.", field="from")
        return [b64(h) for h in self.tree.consistency_proof(old, new)]

    def offer(self, base_url: str) -> dict[str, Any]:
        """The reference offer's `key_transparency` member."""
        return {
            "public_key": self.signer.public_b64,
            "key_id": self.signer.key_id,
            "algorithm": "Ed25519",
            "previous_public_keys": self.retired_keys,
            "head_interval_s": self.head_interval_s,
            "head": f"{base_url}/v1/key-transparency/head",
            "consistency": f"{base_url}/v1/key-transparency/consistency",
            "history": f"{base_url}/v1/key-transparency/history",
        }
