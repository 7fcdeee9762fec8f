"""Export of the audit log as JSON lines, verifiable offline (see verify.py).

Lines, one JSON object each, `kind` first:
  header      format, version, exported_at, from/to (ms or null), public_keys (base64)
  anchor      per chain: `seq` and `hash` of the record just before the first exported one
              (seq 0 and 64 zeros for a full export)
  record      `hash` followed by the record's fields (records.py); drop `kind` and `hash` and
              the rest is exactly what is hashed
  checkpoint  the stored signed checkpoints inside the exported span
  seal        when the exporter holds the signing key: a signature over the span (anchor_seq,
              seq and hash of the last record), so a cut-off tail or head is detected
A time range exports every record of each chain from the first at or after `from` to the last
at or before `to`, contiguously, so the chain from its anchor still verifies.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, cast

import msgspec

from gateway.service.audit.chain import now_ms
from gateway.service.audit.checkpoints import Checkpoint, Signer
from gateway.service.audit.records import COLUMNS, FIELDS, GENESIS
from gateway.store import Row, Store

FORMAT = "dma-gateway-audit-export"
PAGE = 5000
_FAR_FUTURE = 2**62

_encode = msgspec.json.Encoder(order="sorted").encode
_decode = msgspec.json.decode
_SUBJECTS = FIELDS.index("subjects")
_ATTRS = FIELDS.index("attrs")
_HASH = len(FIELDS)
_SEQ = FIELDS.index("seq")

SPANS_SQL = (
    "SELECT chain_id, min(seq) AS first, max(seq) AS last FROM audit_records "
    "WHERE at >= $1 AND at <= $2 GROUP BY chain_id ORDER BY chain_id"
)
RECORD_PAGE_SQL = (
    f"SELECT {COLUMNS} FROM audit_records WHERE chain_id = $1 AND seq > $2 AND seq <= $3 "
    "ORDER BY seq LIMIT $4"
)
HASH_AT_SQL = "SELECT hash FROM audit_records WHERE chain_id = $1 AND seq = $2"
CHECKPOINTS_SQL = (
    "SELECT chain_id, seq, hash, at, key_id, signature FROM audit_checkpoints "
    "WHERE chain_id = $1 AND seq >= $2 AND seq <= $3 ORDER BY seq"
)


def positional(row: Row) -> Sequence[Any]:
    """The row by position: sqlite3.Row and asyncpg.Record both index by column number."""
    return cast(Sequence[Any], row)


def record_fields(row: Row) -> dict[str, Any]:
    """The hashed fields of a `SELECT {COLUMNS}` row (hash is the row's last column)."""
    values = positional(row)
    fields = dict(zip(FIELDS, values, strict=False))
    fields["subjects"] = _decode(values[_SUBJECTS])
    fields["attrs"] = _decode(values[_ATTRS])
    return fields


def record_line(fields: dict[str, Any], hash_hex: str) -> bytes:
    """One `record` line: kind and hash, then the canonical fields."""
    return b'{"kind":"record","hash":"' + hash_hex.encode() + b'",' + _encode(fields)[1:] + b"\n"


def _line(kind: str, obj: Any) -> bytes:
    body = _encode(obj)
    return b'{"kind":"' + kind.encode() + b'"' + (b"," + body[1:] if body != b"{}" else b"}")


def checkpoint_from_row(row: Row) -> Checkpoint:
    return Checkpoint(
        chain_id=row["chain_id"],
        seq=row["seq"],
        hash=row["hash"],
        at=row["at"],
        key_id=row["key_id"],
        signature=row["signature"],
    )


async def record_pages(
    store: Store, chain_id: str, after: int, last: int
) -> AsyncIterator[list[Row]]:
    """Pages of `SELECT {COLUMNS}` rows of one chain with after < seq <= last, by seq."""
    while after < last:
        rows = await store.fetch(RECORD_PAGE_SQL, chain_id, after, last, PAGE)
        if not rows:
            return
        yield rows
        after = positional(rows[-1])[_SEQ]


async def export_lines(
    store: Store,
    *,
    start_ms: int | None = None,
    end_ms: int | None = None,
    signer: Signer | None = None,
    public_keys: Sequence[str] = (),
) -> AsyncIterator[bytes]:
    """The export, line by line (each ending in a newline)."""
    keys = list(public_keys) or ([signer.public_b64] if signer is not None else [])
    header = {
        "format": FORMAT,
        "version": 1,
        "exported_at": now_ms(),
        "from": start_ms,
        "to": end_ms,
        "public_keys": keys,
    }
    yield _line("header", header) + b"\n"
    lo = 0 if start_ms is None else start_ms
    hi = _FAR_FUTURE if end_ms is None else end_ms
    spans = [(r["chain_id"], r["first"], r["last"]) for r in await store.fetch(SPANS_SQL, lo, hi)]
    for chain_id, first, last in spans:
        anchor = GENESIS.hex()
        if first > 1:
            anchor = await store.fetchval(HASH_AT_SQL, chain_id, first - 1) or anchor
        yield _line("anchor", {"chain_id": chain_id, "seq": first - 1, "hash": anchor}) + b"\n"
        pending = [
            checkpoint_from_row(r)
            for r in await store.fetch(CHECKPOINTS_SQL, chain_id, first, last)
        ]
        pending.reverse()
        last_hash = anchor
        async for rows in record_pages(store, chain_id, first - 1, last):
            out = []
            for row in rows:
                fields = record_fields(row)
                last_hash = positional(row)[_HASH]
                out.append(record_line(fields, last_hash))
                while pending and pending[-1].seq <= fields["seq"]:
                    out.append(_line("checkpoint", pending.pop()) + b"\n")
            yield b"".join(out)
        if signer is not None:
            seal = signer.sign(chain_id, last, last_hash, now_ms(), anchor_seq=first - 1)
            yield _line("seal", seal) + b"\n"


def parse_instant(text: str) -> int:
    """ISO 8601 date or date-time (UTC unless an offset is given) to ms since the epoch."""
    from datetime import UTC, datetime

    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not an ISO 8601 date or date-time: {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)
