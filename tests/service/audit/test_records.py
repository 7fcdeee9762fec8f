"""The canonical encoding an auditor re-implements, attributes, pseudonyms and key rotation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.service.audit.pseudonym import KEY_FILE, Pseudonymizer, load_pseudonymizer
from gateway.service.audit.records import AuditRecord, canonical, check_attrs


def record(**over: object) -> AuditRecord:
    fields: dict[str, object] = {
        "chain_id": "main",
        "seq": 1,
        "at": 1,
        "request_id": 'r\u2028\x01"\\/é😀',
        "actor": "provider",
        "client_id": "acme",
        "method": "POST",
        "route": "/v1/messages",
        "status": 202,
        "duration_us": 10,
        "action": "message.accept",
        "subjects": ["b", "a"],
        "pseudonym_key": "k",
        "payload_sha256": None,
        "payload_size": None,
        "attrs": {"z": 1, "a": "x"},
    }
    fields.update(over)
    return AuditRecord(**fields)  # type: ignore[arg-type]


def test_canonical_is_sorted_compact_json_as_python_writes_it() -> None:
    rec = record()
    as_dict = json.loads(canonical(rec))
    assert list(as_dict) == sorted(as_dict)
    expected = json.dumps(as_dict, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert canonical(rec) == expected.encode()
    assert canonical(rec) == canonical(as_dict)
    assert as_dict["subjects"] == ["b", "a"]  # order kept, as given


@pytest.mark.parametrize("value", [1.5, True, None, ["x"]])
def test_attributes_are_strings_or_integers(value: object) -> None:
    with pytest.raises(TypeError):
        check_attrs({"k": value})
    assert check_attrs({"k": "v", "n": 3}) == {"k": "v", "n": 3}


def test_pseudonyms_are_keyed_and_rotate_with_the_key(tmp_path: Path) -> None:
    first = load_pseudonymizer(tmp_path)
    uri = "mimi://whatsapp/u/4915112345678"
    assert first(uri) == load_pseudonymizer(tmp_path)(uri)  # stable across restarts
    assert len(first(uri)) == 32 and "4915112345678" not in first(uri)
    (tmp_path / KEY_FILE).rename(tmp_path / f"{KEY_FILE}.retired")
    second = load_pseudonymizer(tmp_path)
    assert second.key_id != first.key_id and second(uri) != first(uri)
    assert (tmp_path / KEY_FILE).stat().st_mode & 0o777 == 0o600
    with pytest.raises(ValueError):
        Pseudonymizer(b"short")
