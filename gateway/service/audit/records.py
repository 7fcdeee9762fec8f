"""Audit records and their canonical encoding, the input of the hash chain.

Canonical encoding (format v1), so that an auditor can re-implement it: the record's fields as
one JSON object, keys sorted by code point, no whitespace, UTF-8, non-ASCII characters written
as themselves, and only strings, integers, null, lists of strings and flat objects of strings and
integers as values (no floats). That is RFC 8785 (JCS) for these values, and byte for byte
Python's `json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`.

    hash(record) = SHA-256(hash(previous record) || canonical(record))

with 32 zero bytes as the hash before seq 1 of each chain. `hash` itself is not a field.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import msgspec

from gateway.store.audit import RECORD_FIELDS

FORMAT_VERSION = 1
GENESIS = bytes(32)

AttrValue = str | int
Attrs = dict[str, AttrValue]


class AuditRecord(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One audited fact: a request or an internal event, without content or raw user ids."""

    v: int = FORMAT_VERSION
    chain_id: str
    seq: int
    at: int  # ms since the epoch
    request_id: str | None
    actor: str  # provider | admin | platform | anonymous | system
    client_id: str | None
    method: str | None
    route: str | None  # the route template, never the raw path
    status: int | None
    duration_us: int | None
    action: str  # a stable name such as "message.accept"
    subjects: list[str]  # keyed pseudonyms (pseudonym.py), never user ids
    pseudonym_key: str | None  # id of the key the subjects were made with
    payload_sha256: str | None
    payload_size: int | None
    attrs: Attrs  # bounded facts: service, kind, direction, problem type


# The canonical field order (sorted) and the columns of audit_records, `hash` last.
FIELDS: tuple[str, ...] = tuple(sorted(AuditRecord.__struct_fields__))
COLUMNS = ", ".join((*FIELDS, "hash"))
if FIELDS != RECORD_FIELDS:  # a field added here needs its column (a migration) in the store
    raise RuntimeError("AuditRecord fields and the audit_records columns differ")

_canonical = msgspec.json.Encoder(order="sorted")
_decode_record = msgspec.json.Decoder(AuditRecord)


def canonical(record: AuditRecord | Mapping[str, Any]) -> bytes:
    """The canonical encoding of a record's fields (see module docstring)."""
    return _canonical.encode(record)


def chain_hash(prev: bytes, record: AuditRecord | Mapping[str, Any]) -> bytes:
    """SHA-256(prev || canonical(record))."""
    return hashlib.sha256(prev + _canonical.encode(record)).digest()


def check_attrs(attrs: Mapping[str, Any]) -> Attrs:
    """Keep attribute values to strings and integers, so the encoding stays canonical."""
    out: Attrs = {}
    for key, value in attrs.items():
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise TypeError(f"audit attribute {key!r} must be a string or an integer")
        out[str(key)] = value
    return out


def record_from_row(row: Mapping[str, Any]) -> AuditRecord:
    """Rebuild a record from an audit_records row (subjects and attrs are JSON text)."""
    fields = {name: row[name] for name in FIELDS}
    fields["subjects"] = msgspec.json.decode(row["subjects"])
    fields["attrs"] = msgspec.json.decode(row["attrs"])
    return msgspec.convert(fields, AuditRecord)


def row_values(record: AuditRecord, digest: bytes) -> list[Any]:
    """Column values for INSERT, in COLUMNS order."""
    values = [getattr(record, name) for name in FIELDS]
    values[FIELDS.index("subjects")] = _canonical.encode(record.subjects).decode()
    values[FIELDS.index("attrs")] = _canonical.encode(record.attrs).decode()
    values.append(digest.hex())
    return values


def decode_record(data: bytes) -> AuditRecord:
    """A record from its JSON form (unknown fields refused)."""
    return _decode_record.decode(data)
