"""The key transparency log's tables (DESIGN §4.12): leaves, users' salts, the size, heads.

A key change writes its leaf into `kt_pending` in its own transaction (`log_change`), taking no
lock but its user's row. `sequence_pending` then gives pending leaves contiguous indexes from
`kt_tree.size`, whose row it locks `NOWAIT` on PostgreSQL: a write unit never waits on another
replica (it would hold up this replica's group commit); when another replica is sequencing, the
caller tries again a moment later (`is_lock_not_available`). So replicas sharing the database
append to one log and never fork it. SQLite has one writer.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.store.base import Reader, Row, Tx


@dataclass(frozen=True, slots=True)
class LoggedUser:
    """A user's salt and the keys of its latest leaf."""

    salt: bytes
    version: int
    identity_key: str
    signing_key: str


@dataclass(frozen=True, slots=True)
class StoredLeaf:
    leaf_index: int
    data: str


@dataclass(frozen=True, slots=True)
class StoredHead:
    tree_size: int
    root_hash: str
    timestamp: int
    key_id: str
    signature: str


USER = "SELECT salt, version, identity_key, signing_key FROM kt_users WHERE user_uri = $1"
# A new user gets version 1 and the given salt; a known one with other keys the next version
# and keeps its salt; a known one with the same keys returns no row (nothing to log).
BUMP_USER = (
    "INSERT INTO kt_users (user_uri, salt, version, identity_key, signing_key) "
    "VALUES ($1, $2, 1, $3, $4) ON CONFLICT (user_uri) DO UPDATE SET "
    "version = kt_users.version + 1, identity_key = excluded.identity_key, "
    "signing_key = excluded.signing_key "
    "WHERE kt_users.identity_key <> excluded.identity_key "
    "OR kt_users.signing_key <> excluded.signing_key "
    "RETURNING salt, version"
)
INSERT_PENDING = "INSERT INTO kt_pending (user_hash, data, leaf_hash, at) VALUES ($1, $2, $3, $4)"
LOCK_SIZE = {
    "sqlite": "SELECT size FROM kt_tree WHERE id = 1",
    "postgres": "SELECT size FROM kt_tree WHERE id = 1 FOR UPDATE NOWAIT",
}
PENDING = "SELECT id, user_hash, data, leaf_hash, at FROM kt_pending ORDER BY id LIMIT $1"
SET_SIZE = "UPDATE kt_tree SET size = $1 WHERE id = 1"
INSERT_LEAF = (
    "INSERT INTO kt_leaves (leaf_index, user_hash, data, leaf_hash, at) "
    "VALUES ($1, $2, $3, $4, $5)"
)
LEAF_HASHES = (
    "SELECT leaf_hash FROM kt_leaves WHERE leaf_index >= $1 AND leaf_index < $2 "
    "ORDER BY leaf_index"
)
LEAVES = (
    "SELECT leaf_index, data FROM kt_leaves WHERE leaf_index >= $1 AND leaf_index < $2 "
    "ORDER BY leaf_index"
)
USER_LEAVES = "SELECT leaf_index, data FROM kt_leaves WHERE user_hash = $1 ORDER BY leaf_index"
_HEAD_COLUMNS = "tree_size, root_hash, timestamp, key_id, signature"
LATEST_HEAD = f"SELECT {_HEAD_COLUMNS} FROM kt_heads ORDER BY tree_size DESC LIMIT 1"
ALL_HEADS = f"SELECT {_HEAD_COLUMNS} FROM kt_heads ORDER BY tree_size"
# Two replicas may sign the same size: the newer signature stays (same root, fresher time).
UPSERT_HEAD = (
    f"INSERT INTO kt_heads ({_HEAD_COLUMNS}) VALUES ($1, $2, $3, $4, $5) "
    "ON CONFLICT (tree_size) DO UPDATE SET timestamp = excluded.timestamp, "
    "key_id = excluded.key_id, signature = excluded.signature "
    "WHERE excluded.timestamp > kt_heads.timestamp"
)
PAGE = 10000


async def user(db: Reader, user_uri: str) -> LoggedUser | None:
    """The user's salt and latest logged keys, or None before its first leaf."""
    row = await db.fetchrow(USER, user_uri)
    if row is None:
        return None
    return LoggedUser(bytes(row["salt"]), row["version"], row["identity_key"], row["signing_key"])


async def bump_user(
    tx: Tx, user_uri: str, new_salt: bytes, identity_key: str, signing_key: str
) -> tuple[bytes, int] | None:
    """Make these the user's logged keys: (its salt, the new version), None if they were."""
    row = await tx.fetchrow(BUMP_USER, user_uri, new_salt, identity_key, signing_key)
    return None if row is None else (bytes(row["salt"]), int(row["version"]))


async def add_pending(tx: Tx, user_hash: str, data: bytes, hash_: bytes, at: int) -> None:
    """Write a leaf waiting for its index (see `sequence_pending`)."""
    await tx.execute(INSERT_PENDING, user_hash, data.decode(), hash_, at)


async def has_pending(db: Reader) -> bool:
    """Whether leaves wait for their index."""
    return await db.fetchval("SELECT 1 FROM kt_pending LIMIT 1") is not None


async def sequence_pending(tx: Tx, limit: int = 1000) -> int:
    """Append up to `limit` pending leaves to the log, oldest first; how many.

    On PostgreSQL raises at once (`is_lock_not_available`) while another replica sequences.
    """
    size = int(await tx.fetchval(LOCK_SIZE[tx.dialect]))
    rows = await tx.fetch(PENDING, limit)
    if not rows:
        return 0
    await tx.executemany(
        INSERT_LEAF,
        [
            (size + n, r["user_hash"], r["data"], bytes(r["leaf_hash"]), r["at"])
            for n, r in enumerate(rows)
        ],
    )
    await tx.executemany("DELETE FROM kt_pending WHERE id = $1", [(r["id"],) for r in rows])
    await tx.execute(SET_SIZE, size + len(rows))
    return len(rows)


async def size(db: Reader) -> int:
    """How many leaves the log holds."""
    return int(await db.fetchval("SELECT size FROM kt_tree WHERE id = 1") or 0)


async def leaf_hashes(db: Reader, start: int, end: int) -> list[bytes]:
    """The hashes of leaves start..end-1, in order."""
    rows = await db.fetch(LEAF_HASHES, start, end)
    return [bytes(r["leaf_hash"]) for r in rows]


async def leaves(db: Reader, start: int, end: int) -> list[StoredLeaf]:
    """Leaves start..end-1 with their data, in order."""
    rows = await db.fetch(LEAVES, start, end)
    return [StoredLeaf(r["leaf_index"], r["data"]) for r in rows]


async def user_leaves(db: Reader, user_hash: str) -> list[StoredLeaf]:
    """Every leaf of the user committed to by `user_hash`, oldest first."""
    rows = await db.fetch(USER_LEAVES, user_hash)
    return [StoredLeaf(r["leaf_index"], r["data"]) for r in rows]


def _head(r: Row) -> StoredHead:
    return StoredHead(r["tree_size"], r["root_hash"], r["timestamp"], r["key_id"], r["signature"])


async def latest_head(db: Reader) -> StoredHead | None:
    """The head of the largest tree signed, or None before the first."""
    row = await db.fetchrow(LATEST_HEAD)
    return None if row is None else _head(row)


async def heads(db: Reader) -> list[StoredHead]:
    """Every stored head, smallest tree first."""
    return [_head(r) for r in await db.fetch(ALL_HEADS)]


async def put_head(tx: Tx, head: StoredHead) -> None:
    """Store a signed head (a fresher signature of a known size replaces the older)."""
    await tx.execute(
        UPSERT_HEAD, head.tree_size, head.root_hash, head.timestamp, head.key_id, head.signature
    )
