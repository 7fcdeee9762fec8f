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
from typing import Any

import msgspec

from gateway.clock import now_ms
from gateway.service.audit.checkpoints import Checkpoint, Signer
from gateway.service.audit.records import FIELDS, GENESIS
from gateway.store import Reader
from gateway.store import audit as audit_store
from gateway.store.audit import CheckpointRow, RecordRow, record_pages

FORMAT = "dma-gateway-audit-export"
_FAR_FUTURE = 2**62

_encode = msgspec.json.Encoder(order="sorted").encode
_decode = msgspec.json.decode
_SUBJECTS = FIELDS.index("subjects")
_ATTRS = FIELDS.index("attrs")
_HASH = len(FIELDS)


def record_fields(values: RecordRow) -> dict[str, Any]:
    """The hashed fields of a stored record row (its hash is the row's last column)."""
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


def checkpoint_from_row(row: CheckpointRow) -> Checkpoint:
    """The service's Checkpoint of a stored one."""
    return Checkpoint(**row._asdict())


async def export_lines(
    store: Reader,
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
    for chain_id, first, last in await audit_store.chain_spans(store, lo, hi):
        anchor = GENESIS.hex()
        if first > 1:
            anchor = await audit_store.record_hash(store, chain_id, first - 1) or anchor
        yield _line("anchor", {"chain_id": chain_id, "seq": first - 1, "hash": anchor}) + b"\n"
        pending = [
            checkpoint_from_row(r)
            for r in await audit_store.checkpoints_between(store, chain_id, first, last)
        ]
        pending.reverse()
        last_hash = anchor
        async for rows in record_pages(store, chain_id, first - 1, last):
            out = []
            for row in rows:
                fields = record_fields(row)
                last_hash = row[_HASH]
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
        raise ValueError("not an ISO 8601 date or date-time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)
