"""Checking the key transparency log from outside: an exported log offline, or heads over time.

An export (JSON lines) is a header `{"kind": "kt_log", "format": 1, "public_keys": [...]}`, then
every leaf `{"kind": "leaf", "leaf_index", "leaf"}` in order, then every signed head
`{"kind": "head", tree_size, root_hash, timestamp, key_id, signature}`. Verifying it rebuilds the
tree from the leaves and requires every head to be validly signed and to have exactly the root of
the leaves it covers: a rewritten leaf, a leaf removed or reordered, or a head of another history
shows. Heads kept by a third party over time (`--heads`) are held against the same tree.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.crypto.merkle import MerkleTree, leaf_hash
from gateway.crypto.transparency import (
    Head,
    consistency_problem,
    head_problem,
    parse_leaf,
    unb64,
)
from gateway.service.transparency import head_json
from gateway.store import Store
from gateway.store import transparency as kt_store

FORMAT = 1


@dataclass
class Outcome:
    """What a check found: `problems` is empty when the log is intact."""

    leaves: int = 0
    heads: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def render(self) -> str:
        if self.ok:
            return f"key transparency log intact: {self.leaves} leaves, {self.heads} heads checked"
        return "key transparency log NOT intact:\n" + "\n".join(f"  {p}" for p in self.problems)


async def export_lines(store: Store, public_keys: Iterable[str]) -> AsyncIterator[bytes]:
    """The export of the whole log, one JSON object per line."""
    encode = msgspec.json.encode
    header = {"kind": "kt_log", "format": FORMAT, "public_keys": list(public_keys)}
    yield encode(header) + b"\n"
    size = await kt_store.size(store)
    for start in range(0, size, kt_store.PAGE):
        for leaf in await kt_store.leaves(store, start, min(size, start + kt_store.PAGE)):
            yield (
                encode({"kind": "leaf", "leaf_index": leaf.leaf_index, "leaf": leaf.data}) + b"\n"
            )
    for head in await kt_store.heads(store):
        yield encode({"kind": "head", **head_json(head)}) + b"\n"


def _head_against_tree(
    head: Head, tree: MerkleTree, keys: Mapping[str, Ed25519PublicKey], where: str
) -> str | None:
    problem = head_problem(head, keys)
    if problem is not None:
        return f"{where} (size {head.tree_size}): {problem}"
    if head.tree_size > len(tree):
        return f"{where} (size {head.tree_size}): covers leaves the log does not hold (truncated)"
    if unb64(head.root_hash) != tree.root(head.tree_size):
        return (
            f"{where} (size {head.tree_size}): its root is not the root of the log's first "
            f"{head.tree_size} leaves (history rewritten)"
        )
    return None


def verify_export(
    lines: Iterable[bytes],
    keys: Mapping[str, Ed25519PublicKey],
    *,
    kept_heads: Iterable[Head] = (),
) -> Outcome:
    """Check an export: leaves in order and well formed, every head signed and matching."""
    outcome = Outcome()
    tree = MerkleTree()
    versions: dict[str, int] = {}
    heads: list[Head] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item: dict[str, Any] = msgspec.json.decode(line)
            kind = item.pop("kind")
        except (msgspec.DecodeError, KeyError, AttributeError):
            outcome.problems.append(f"line {number}: not a log item")
            continue
        if kind == "leaf":
            index = item.get("leaf_index")
            if index != len(tree):
                outcome.problems.append(
                    f"line {number}: leaf {index} where leaf {len(tree)} was due (missing, "
                    "reordered or inserted)"
                )
            data = str(item.get("leaf", "")).encode()
            try:
                leaf = parse_leaf(data)
            except ValueError as exc:
                outcome.problems.append(f"leaf {index}: {exc}")
            else:
                expected = versions.get(leaf.user, 0) + 1
                if leaf.version != expected:
                    outcome.problems.append(
                        f"leaf {index}: version {leaf.version} of its user where {expected} "
                        "was due"
                    )
                versions[leaf.user] = leaf.version
            tree.append(leaf_hash(data))
        elif kind == "head":
            try:
                heads.append(msgspec.convert(item, Head))
            except msgspec.ValidationError as exc:
                outcome.problems.append(f"line {number}: malformed head: {exc}")
        elif kind != "kt_log":
            outcome.problems.append(f"line {number}: unknown item kind {kind!r}")
    outcome.leaves = len(tree)
    previous: Head | None = None
    for head in heads:
        problem = _head_against_tree(head, tree, keys, "head")
        if problem is not None:
            outcome.problems.append(problem)
        if previous is not None and head.timestamp < previous.timestamp:
            outcome.problems.append(
                f"head (size {head.tree_size}): signed before the smaller tree's head"
            )
        previous = head
    for head in kept_heads:
        problem = _head_against_tree(head, tree, keys, "kept head")
        if problem is not None:
            outcome.problems.append(problem)
    outcome.heads = len(heads)
    return outcome


def check_new_head(
    last: Head | None, new: Head, proof: list[str], keys: Mapping[str, Ed25519PublicKey]
) -> str | None:
    """Why `new` cannot follow `last` (signature, shrinking, consistency), or None."""
    problem = head_problem(new, keys)
    if problem is not None or last is None:
        return problem
    return consistency_problem(last, new, proof)
