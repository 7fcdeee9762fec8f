"""Verification of the audit log, live from the database (read only) or from an export file.

Per chain: records must run seq anchor+1, anchor+2, ... without a gap; each record's hash must be
SHA-256(previous hash || canonical fields); every checkpoint must carry a good signature by a
known key and equal the chain's hash at its seq; no checkpoint (or export seal) may lie beyond
the last record. The first failure is reported, naming the record and why.

Not detectable from the log alone: records removed after the last checkpoint together with any
later checkpoints (the tail a signature does not cover yet). Exports are sealed; for the live
database keep checkpoints or sealed exports elsewhere and compare (README, "Auditing").
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.service.audit.checkpoints import Checkpoint, keyring, parse_public_key
from gateway.service.audit.checkpoints import signature_problem as _signature_problem
from gateway.service.audit.export import FORMAT, checkpoint_from_row
from gateway.service.audit.records import FIELDS, GENESIS
from gateway.store import Reader
from gateway.store import audit as audit_store
from gateway.store.audit import RecordRow

Keys = Mapping[str, Ed25519PublicKey]

_encode = msgspec.json.Encoder(order="sorted").encode
_decode = msgspec.json.decode
_HASH = len(FIELDS)
_SEQ = FIELDS.index("seq")
_SUBJECTS = FIELDS.index("subjects")
_ATTRS = FIELDS.index("attrs")


class Tampered(Exception):
    """The log is not intact; `where` names the first bad record or checkpoint."""

    def __init__(self, where: str, why: str) -> None:
        super().__init__(f"{where}: {why}")
        self.where = where
        self.why = why


class Gap(Exception):
    def __init__(self, expected: int, found: Any, where: str) -> None:
        super().__init__(where)
        self.expected, self.found, self.where = expected, found, where


@dataclass
class ChainSummary:
    chain_id: str
    anchor_seq: int
    last_seq: int
    checkpoints: int
    last_checkpoint: int | None
    sealed: bool

    @property
    def records(self) -> int:
        return self.last_seq - self.anchor_seq


@dataclass
class Outcome:
    """The verdict: `problem` is None when everything checked is intact."""

    chains: list[ChainSummary] = field(default_factory=list)
    problem: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.problem is None

    @property
    def records(self) -> int:
        return sum(c.records for c in self.chains)

    def render(self) -> str:
        lines = []
        for c in self.chains:
            last_cp = "" if c.last_checkpoint is None else f" (last at seq {c.last_checkpoint})"
            seal = ", export seal verified" if c.sealed else ""
            lines.append(
                f"chain {c.chain_id}: records {c.anchor_seq + 1}..{c.last_seq} ({c.records}), "
                f"{c.checkpoints} signed checkpoints verified{last_cp}{seal}"
            )
        lines += [f"warning: {w}" for w in self.warnings]
        if self.problem is None:
            lines.append(f"INTACT: {self.records} records verified")
        else:
            lines.append(f"TAMPERED: {self.problem}")
        return "\n".join(lines)


class ChainVerifier:
    """Checks one chain's records in order against its anchor and checkpoints."""

    def __init__(
        self,
        chain_id: str,
        checkpoints: Mapping[int, Checkpoint],
        *,
        anchor_seq: int = 0,
        anchor_hash: bytes = GENESIS,
    ) -> None:
        self.chain_id = chain_id
        self.checkpoints = checkpoints
        self.anchor_seq = anchor_seq
        self.expected = anchor_seq + 1
        self.prev = anchor_hash

    def feed(self, fields: dict[str, Any], stored: Any, where: str = "") -> None:
        """Check the next record (`fields` are its hashed fields, `stored` its hash)."""
        seq = fields.get("seq")
        digest = hashlib.sha256(self.prev + _encode(fields)).digest()
        hex_digest = digest.hex()
        if (
            hex_digest != stored
            or seq != self.expected
            or fields.get("chain_id") != self.chain_id
            or (seq in self.checkpoints and self.checkpoints[seq].hash != hex_digest)
        ):
            self._explain(fields, seq, hex_digest, stored, f"record seq {seq}{where}")
        self.prev = digest
        self.expected += 1

    def _explain(
        self, fields: dict[str, Any], seq: Any, digest: str, stored: Any, label: str
    ) -> NoReturn:
        """Raise the reason `feed` refused a record (kept off the fast path)."""
        if seq != self.expected:
            raise Gap(self.expected, seq, label)
        if fields.get("chain_id") != self.chain_id:
            raise Tampered(label, f"it names chain {fields.get('chain_id')!r}")
        if digest != stored:
            raise Tampered(
                label,
                "its fields do not hash to its stored hash: a field was changed, records were "
                "swapped, or the record before it was altered",
            )
        raise Tampered(
            label,
            f"the signed checkpoint at seq {seq} holds another hash: the records up to "
            "here were rewritten",
        )

    def feed_rows(self, rows: Sequence[RecordRow]) -> None:
        """Check a page of stored record rows: feed() unrolled, for the database check."""
        sha256, encode, decode = hashlib.sha256, _encode, _decode
        prev, expected, chain_id, checkpoints = (
            self.prev,
            self.expected,
            self.chain_id,
            self.checkpoints,
        )
        for values in rows:
            fields = dict(zip(FIELDS, values, strict=False))
            try:
                fields["subjects"] = decode(values[_SUBJECTS])
                fields["attrs"] = decode(values[_ATTRS])
            except msgspec.DecodeError:
                raise Tampered(
                    f"record seq {values[_SEQ]}", "its subjects or attrs are not valid JSON"
                ) from None
            digest = sha256(prev + encode(fields)).digest()
            hex_digest = digest.hex()
            if (
                hex_digest != values[_HASH]
                or values[_SEQ] != expected
                or fields["chain_id"] != chain_id
                or (expected in checkpoints and checkpoints[expected].hash != hex_digest)
            ):
                self.prev, self.expected = prev, expected
                self.feed(fields, values[_HASH])  # the explaining path: raises
            prev = digest
            expected += 1
        self.prev, self.expected = prev, expected

    def finish(self, seal: Checkpoint | None = None) -> ChainSummary:
        """Checks once the last record is in: nothing signed may lie beyond it."""
        last = self.expected - 1
        beyond = [seq for seq in self.checkpoints if seq > last]
        if beyond:
            raise Tampered(
                f"chain {self.chain_id}",
                f"truncated: the signed checkpoint at seq {max(beyond)} covers records that "
                f"are gone (the log ends at seq {last})",
            )
        if seal is not None:
            if seal.anchor_seq != self.anchor_seq:
                raise Tampered(
                    f"chain {self.chain_id}",
                    f"the export was sealed from seq {seal.anchor_seq} but starts after seq "
                    f"{self.anchor_seq}: records at its head were cut off",
                )
            if seal.seq != last:
                raise Tampered(
                    f"chain {self.chain_id}",
                    f"truncated: the export was sealed at seq {seal.seq} but ends at seq {last}",
                )
            if seal.hash != self.prev.hex():
                raise Tampered(f"chain {self.chain_id}", "the export seal holds another hash")
        inside = [seq for seq in self.checkpoints if self.anchor_seq < seq <= last]
        return ChainSummary(
            chain_id=self.chain_id,
            anchor_seq=self.anchor_seq,
            last_seq=last,
            checkpoints=len(inside),
            last_checkpoint=max(inside, default=None),
            sealed=seal is not None,
        )


def check_signatures(checkpoints: Mapping[int, Checkpoint], keys: Keys, what: str) -> None:
    """Raise Tampered for the first checkpoint whose signature is not good under `keys`."""
    for seq in sorted(checkpoints):
        problem = _signature_problem(checkpoints[seq], keys)
        if problem is not None:
            raise Tampered(f"{what} at seq {seq}", problem)


def _uncovered(summary: ChainSummary, outcome: Outcome) -> None:
    covered = summary.last_checkpoint or summary.anchor_seq
    if not summary.sealed and summary.last_seq > covered:
        outcome.warnings.append(
            f"chain {summary.chain_id}: records {covered + 1}..{summary.last_seq} are not yet "
            "covered by a signed checkpoint (removal of such a tail is not detectable)"
        )


async def verify_database(store: Reader, keys: Keys) -> Outcome:
    """Verify every chain in the database; read only, safe while the gateway writes."""
    outcome = Outcome()
    # Checkpoints first, then heads: a checkpoint never covers a record written later.
    checkpoints: dict[str, dict[int, Checkpoint]] = {}
    for row in await audit_store.all_checkpoints(store):
        checkpoints.setdefault(row.chain_id, {})[row.seq] = checkpoint_from_row(row)
    heads = await audit_store.chain_heads(store)
    try:
        for chain_id in sorted(set(heads) | set(checkpoints)):
            cps = checkpoints.get(chain_id, {})
            check_signatures(cps, keys, f"chain {chain_id} checkpoint")
            verifier = ChainVerifier(chain_id, cps)
            try:
                async for page in audit_store.record_pages(
                    store, chain_id, 0, heads.get(chain_id, 0)
                ):
                    verifier.feed_rows(page)
            except Gap as gap:
                raise Tampered(
                    f"record seq {gap.expected}",
                    f"missing: deleted from the log (the next record is seq {gap.found})",
                ) from None
            summary = verifier.finish()
            outcome.chains.append(summary)
            _uncovered(summary, outcome)
    except Tampered as exc:
        outcome.problem = str(exc)
    return outcome


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with path.open("rb") as file:
        for number, line in enumerate(file, 1):
            if line.strip():
                yield number, line


def _object(number: int, line: bytes) -> dict[str, Any]:
    try:
        obj = _decode(line)
    except msgspec.DecodeError:
        raise Tampered(f"line {number}", "not valid JSON") from None
    if not isinstance(obj, dict):
        raise Tampered(f"line {number}", "not a JSON object")
    return obj


def _checkpoint(number: int, obj: dict[str, Any]) -> Checkpoint:
    try:
        return msgspec.convert(obj, Checkpoint)
    except msgspec.ValidationError as exc:
        raise Tampered(f"line {number}", f"malformed checkpoint: {exc}") from None


class _ExportIndex:
    """Everything in an export but its records (first pass)."""

    def __init__(self, path: Path) -> None:
        self.header: dict[str, Any] | None = None
        self.anchors: dict[str, tuple[int, str]] = {}
        self.checkpoints: dict[str, dict[int, Checkpoint]] = {}
        self.seals: dict[str, Checkpoint] = {}
        for number, line in _lines(path):
            if line.startswith(b'{"kind":"record"'):
                continue
            obj = _object(number, line)
            kind = obj.pop("kind", None)
            if kind == "header":
                self.header = obj
            elif kind == "anchor":
                self.anchors[str(obj.get("chain_id"))] = (obj.get("seq", -1), obj.get("hash", ""))
            elif kind == "checkpoint":
                cp = _checkpoint(number, obj)
                self.checkpoints.setdefault(cp.chain_id, {})[cp.seq] = cp
            elif kind == "seal":
                seal = _checkpoint(number, obj)
                self.seals[seal.chain_id] = seal
            elif kind != "record":
                raise Tampered(f"line {number}", f"unknown line kind {kind!r}")
        if self.header is None or self.header.get("format") != FORMAT:
            raise Tampered("header", f"not a {FORMAT} file")


def _find_later(path: Path, after: int, chain_id: str, seq: int) -> bool:
    for number, line in _lines(path):
        if number > after and line.startswith(b'{"kind":"record"'):
            obj = _object(number, line)
            if obj.get("chain_id") == chain_id and obj.get("seq") == seq:
                return True
    return False


def verify_export(path: Path, keys: Keys | None) -> Outcome:
    """Verify an export file offline; without `keys`, against the keys the file names."""
    outcome = Outcome()
    try:
        index = _ExportIndex(path)
        if keys is None:
            keys = keyring(parse_public_key(k) for k in index.header.get("public_keys", []))  # type: ignore[union-attr]
            outcome.warnings.append(
                "signatures checked against the public key(s) inside the export; pass "
                "--public-key with the published key to rule out re-signing"
            )
        for chain_id, cps in sorted(index.checkpoints.items()):
            check_signatures(cps, keys, f"chain {chain_id} checkpoint")
        for chain_id, seal in sorted(index.seals.items()):
            check_signatures({seal.seq: seal}, keys, f"chain {chain_id} export seal")
        _verify_export_records(path, index, outcome)
    except Tampered as exc:
        outcome.problem = str(exc)
    return outcome


def _verify_export_records(path: Path, index: _ExportIndex, outcome: Outcome) -> None:
    done: set[str] = set()
    verifier: ChainVerifier | None = None

    def start(chain_id: str) -> ChainVerifier:
        if chain_id in done:
            raise Tampered(f"chain {chain_id}", "its records are not contiguous (reordered)")
        if chain_id not in index.anchors:
            raise Tampered(f"chain {chain_id}", "no anchor line")
        seq, hash_hex = index.anchors[chain_id]
        try:
            anchor = bytes.fromhex(hash_hex)
        except (TypeError, ValueError):
            raise Tampered(f"chain {chain_id}", "malformed anchor") from None
        return ChainVerifier(
            chain_id, index.checkpoints.get(chain_id, {}), anchor_seq=seq, anchor_hash=anchor
        )

    def finish(v: ChainVerifier) -> None:
        summary = v.finish(index.seals.get(v.chain_id))
        outcome.chains.append(summary)
        _uncovered(summary, outcome)
        done.add(v.chain_id)

    for number, line in _lines(path):
        if not line.startswith(b'{"kind":"record"'):
            obj = _object(number, line)
            if obj.get("kind") != "record":
                continue
        else:
            obj = _object(number, line)
        del obj["kind"]
        stored = obj.pop("hash", None)
        chain_id = str(obj.get("chain_id"))
        if verifier is None or verifier.chain_id != chain_id:
            if verifier is not None:
                finish(verifier)
            verifier = start(chain_id)
        try:
            verifier.feed(obj, stored, f" (line {number})")
        except Gap as gap:
            raise _classify(path, number, chain_id, gap) from None
    if verifier is not None:
        finish(verifier)
    for chain_id in sorted(set(index.anchors) - done):
        finish(start(chain_id))


def _classify(path: Path, number: int, chain_id: str, gap: Gap) -> Tampered:
    if isinstance(gap.found, int) and gap.found < gap.expected:
        return Tampered(gap.where, f"out of order: expected seq {gap.expected} (reordered)")
    if _find_later(path, number, chain_id, gap.expected):
        return Tampered(
            gap.where, f"out of order: it comes before seq {gap.expected} (records swapped)"
        )
    return Tampered(
        f"record seq {gap.expected}",
        f"missing: deleted from the export (the next record is seq {gap.found}, line {number})",
    )
