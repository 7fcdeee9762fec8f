"""The audit log's tables: hash-chained records and signed checkpoints (DESIGN §4.7).

A record row holds the record's hashed fields, in code-point order of their names, then its
`hash` (RECORD_COLUMNS); the service checks at import that its record type has exactly those
fields. Record pages are handed back as rows indexed by position in that order, which is what
the verifier's unrolled loop reads (sqlite3.Row and asyncpg.Record both index by number).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, NamedTuple, cast

from gateway.store.base import Reader, Tx

# The hashed fields of a record (sorted by name), then its hash: the columns of audit_records.
RECORD_FIELDS: tuple[str, ...] = (
    "action", "actor", "at", "attrs", "chain_id", "client_id", "duration_us", "method",
    "payload_sha256", "payload_size", "pseudonym_key", "request_id", "route", "seq", "status",
    "subjects", "v",
)  # fmt: skip
RECORD_COLUMNS: tuple[str, ...] = (*RECORD_FIELDS, "hash")
PAGE = 5000

_COLUMNS = ", ".join(RECORD_COLUMNS)
_SEQ = RECORD_FIELDS.index("seq")

HEAD_SQL = "SELECT seq, hash FROM audit_records WHERE chain_id = $1 ORDER BY seq DESC LIMIT 1"
INSERT_RECORD_SQL = (
    f"INSERT INTO audit_records ({_COLUMNS}) VALUES "
    f"({', '.join(f'${i}' for i in range(1, len(RECORD_COLUMNS) + 1))})"
)
HEADS_SQL = (
    "SELECT chain_id, max(seq) AS last FROM audit_records GROUP BY chain_id ORDER BY chain_id"
)
SPANS_SQL = (
    "SELECT chain_id, min(seq) AS first, max(seq) AS last FROM audit_records "
    "WHERE at >= $1 AND at <= $2 GROUP BY chain_id ORDER BY chain_id"
)
RECORD_PAGE_SQL = (
    f"SELECT {_COLUMNS} FROM audit_records WHERE chain_id = $1 AND seq > $2 AND seq <= $3 "
    "ORDER BY seq LIMIT $4"
)
HASH_AT_SQL = "SELECT hash FROM audit_records WHERE chain_id = $1 AND seq = $2"

_CHECKPOINT_COLUMNS = "chain_id, seq, hash, at, key_id, signature"
LAST_CHECKPOINT_SEQ_SQL = "SELECT max(seq) FROM audit_checkpoints WHERE chain_id = $1"
LATEST_CHECKPOINT_SQL = (
    f"SELECT {_CHECKPOINT_COLUMNS} FROM audit_checkpoints WHERE chain_id = $1 "
    "ORDER BY seq DESC LIMIT 1"
)
INSERT_CHECKPOINT_SQL = (
    f"INSERT INTO audit_checkpoints ({_CHECKPOINT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
)
ALL_CHECKPOINTS_SQL = f"SELECT {_CHECKPOINT_COLUMNS} FROM audit_checkpoints"
CHECKPOINTS_IN_SQL = (
    f"SELECT {_CHECKPOINT_COLUMNS} FROM audit_checkpoints "
    "WHERE chain_id = $1 AND seq >= $2 AND seq <= $3 ORDER BY seq"
)


class ChainHead(NamedTuple):
    """The last record of a chain: its seq and hash (hex)."""

    seq: int
    hash: str


class ChainSpan(NamedTuple):
    """The first and last seq of a chain's records within a time range."""

    chain_id: str
    first: int
    last: int


class CheckpointRow(NamedTuple):
    """A stored signed checkpoint, as its columns."""

    chain_id: str
    seq: int
    hash: str
    at: int
    key_id: str
    signature: str


RecordRow = Sequence[Any]  # RECORD_COLUMNS by position


def _checkpoint(row: Any) -> CheckpointRow:
    return CheckpointRow(
        row["chain_id"], row["seq"], row["hash"], row["at"], row["key_id"], row["signature"]
    )


async def chain_head(db: Reader, chain_id: str) -> ChainHead | None:
    """The chain's last record, or None when it has none."""
    row = await db.fetchrow(HEAD_SQL, chain_id)
    return None if row is None else ChainHead(row["seq"], row["hash"])


async def insert_record(tx: Tx, values: Sequence[Any]) -> None:
    """Insert one record row, `values` in RECORD_COLUMNS order (the hash last)."""
    await tx.execute(INSERT_RECORD_SQL, *values)


async def insert_records(tx: Tx, rows: Sequence[Sequence[Any]]) -> None:
    """Insert record rows (each as in `insert_record`) in one multi-row statement."""
    await tx.executemany(INSERT_RECORD_SQL, rows)


async def chain_heads(db: Reader) -> dict[str, int]:
    """The last seq of every chain, by chain id (in chain id order)."""
    return {row["chain_id"]: row["last"] for row in await db.fetch(HEADS_SQL)}


async def chain_spans(db: Reader, start_ms: int, end_ms: int) -> list[ChainSpan]:
    """Per chain, the first and last seq of its records with start_ms <= at <= end_ms."""
    rows = await db.fetch(SPANS_SQL, start_ms, end_ms)
    return [ChainSpan(row["chain_id"], row["first"], row["last"]) for row in rows]


async def record_hash(db: Reader, chain_id: str, seq: int) -> str | None:
    """The stored hash of one record, or None when it is not there."""
    value = await db.fetchval(HASH_AT_SQL, chain_id, seq)
    return None if value is None else str(value)


async def record_pages(
    db: Reader, chain_id: str, after: int, last: int, page: int = PAGE
) -> AsyncIterator[list[RecordRow]]:
    """Pages of one chain's record rows with after < seq <= last, by seq."""
    while after < last:
        rows = cast(list[RecordRow], await db.fetch(RECORD_PAGE_SQL, chain_id, after, last, page))
        if not rows:
            return
        yield rows
        after = rows[-1][_SEQ]


async def last_checkpoint_seq(db: Reader, chain_id: str) -> int | None:
    """The highest seq a checkpoint of the chain covers, or None."""
    value = await db.fetchval(LAST_CHECKPOINT_SEQ_SQL, chain_id)
    return None if value is None else int(value)


async def latest_checkpoint(db: Reader, chain_id: str) -> CheckpointRow | None:
    """The chain's checkpoint of the highest seq, or None."""
    row = await db.fetchrow(LATEST_CHECKPOINT_SQL, chain_id)
    return None if row is None else _checkpoint(row)


async def insert_checkpoint(tx: Tx, cp: CheckpointRow) -> None:
    """Store a signed checkpoint."""
    await tx.execute(INSERT_CHECKPOINT_SQL, *cp)


async def all_checkpoints(db: Reader) -> list[CheckpointRow]:
    """Every stored checkpoint, of every chain."""
    return [_checkpoint(row) for row in await db.fetch(ALL_CHECKPOINTS_SQL)]


async def checkpoints_between(
    db: Reader, chain_id: str, first: int, last: int
) -> list[CheckpointRow]:
    """The chain's checkpoints with first <= seq <= last, by seq."""
    return [_checkpoint(row) for row in await db.fetch(CHECKPOINTS_IN_SQL, chain_id, first, last)]
