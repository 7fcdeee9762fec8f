"""WhatsApp shared contacts <-> vCard 4.0 (RFC 6350), the neutral form of a contact card.

Covers every field of the Cloud API contacts object; WhatsApp-only data travels in vCard
extension parameters (`X-WA-ID` on TEL, `X-COUNTRY-CODE` on ADR, RFC 6350 §6.10 x-names).
"""

from __future__ import annotations

import re
from typing import Any

from gateway.translate.errors import TranslationError

_NAME = ("last_name", "first_name", "middle_name", "prefix", "suffix")  # N (RFC 6350 §6.2.2)
_ADR = ("street", "city", "state", "zip", "country")  # ADR components 3..7 (§6.3.1)
_ESCAPES = {"\\": "\\\\", ";": "\\;", ",": "\\,", "\n": "\\n"}
_UNESCAPE = re.compile(r"\\(.)")
_SPLIT = re.compile(r"(?<!\\);")


def _esc(value: str) -> str:
    return "".join(_ESCAPES.get(ch, ch) for ch in value.replace("\r\n", "\n"))


def _unesc(value: str) -> str:
    return _UNESCAPE.sub(lambda m: "\n" if m.group(1) in "nN" else m.group(1), value)


def _param(name: str, value: str | None) -> str:
    if not value:
        return ""
    if '"' in value or "\n" in value:
        raise TranslationError(f"contacts.{name}", "parameter values cannot hold quotes")
    return f';{name}="{value}"' if any(c in value for c in ":;,") else f";{name}={value}"


def _card(contact: dict[str, Any]) -> list[str]:
    name = contact.get("name", {})
    lines = ["BEGIN:VCARD", "VERSION:4.0", "FN:" + _esc(name.get("formatted_name", ""))]
    if any(name.get(k) for k in _NAME):
        lines.append("N:" + ";".join(_esc(name.get(k, "")) for k in _NAME))
    if contact.get("birthday"):
        lines.append("BDAY:" + _esc(contact["birthday"]))
    for phone in contact.get("phones", ()):
        params = _param("TYPE", phone.get("type")) + _param("X-WA-ID", phone.get("wa_id"))
        lines.append(f"TEL{params}:" + _esc(phone.get("phone", "")))
    for email in contact.get("emails", ()):
        lines.append(f"EMAIL{_param('TYPE', email.get('type'))}:" + _esc(email.get("email", "")))
    for url in contact.get("urls", ()):
        lines.append(f"URL{_param('TYPE', url.get('type'))}:" + _esc(url.get("url", "")))
    org = contact.get("org", {})
    if org.get("company") or org.get("department"):
        lines.append("ORG:" + _esc(org.get("company", "")) + ";" + _esc(org.get("department", "")))
    if org.get("title"):
        lines.append("TITLE:" + _esc(org["title"]))
    for adr in contact.get("addresses", ()):
        params = _param("TYPE", adr.get("type")) + _param(
            "X-COUNTRY-CODE", adr.get("country_code")
        )
        lines.append(f"ADR{params}:;;" + ";".join(_esc(adr.get(k, "")) for k in _ADR))
    lines.append("END:VCARD")
    return lines


def contacts_to_vcard(contacts: list[dict[str, Any]]) -> str:
    """Render WhatsApp contacts as one vCard stream (one card per contact)."""
    return "".join(line + "\r\n" for contact in contacts for line in _card(contact))


def _split_params(head: str) -> tuple[str, dict[str, str]]:
    parts = re.findall(r'(?:[^;"]|"[^"]*")+', head)
    params: dict[str, str] = {}
    for item in parts[1:]:
        key, _, value = item.partition("=")
        params[key.upper()] = value.strip('"')
    return parts[0].upper(), params


def _content_line(line: str) -> tuple[str, dict[str, str], str]:
    match = re.match(r'((?:[^:"]|"[^"]*")*):(.*)', line, re.S)
    if match is None:
        raise TranslationError("contacts", f"not a vCard content line: {line[:40]!r}")
    name, params = _split_params(match.group(1))
    return name, params, match.group(2)


def _put(target: dict[str, Any], key: str, value: str) -> None:
    if value:
        target[key] = value


def vcard_to_contacts(text: str) -> list[dict[str, Any]]:
    """Parse a vCard stream into WhatsApp contacts objects."""
    lines = re.sub(r"\r?\n[ \t]", "", text).splitlines()
    contacts: list[dict[str, Any]] = []
    card: dict[str, Any] | None = None
    for line in filter(None, lines):
        name, params, value = _content_line(line)
        if name == "BEGIN":
            card = {"name": {}}
            continue
        if card is None:
            raise TranslationError("contacts", "content outside BEGIN:VCARD")
        if name == "END":
            if not card["name"].get("formatted_name"):
                raise TranslationError("contacts", "a card needs FN (formatted_name)")
            contacts.append({k: v for k, v in card.items() if v})
            card = None
        elif name == "FN":
            card["name"]["formatted_name"] = _unesc(value)
        elif name == "N":
            for key, part in zip(_NAME, _SPLIT.split(value), strict=False):
                _put(card["name"], key, _unesc(part))
        elif name == "BDAY":
            card["birthday"] = _unesc(value)
        elif name in ("TEL", "EMAIL", "URL"):
            key = {"TEL": "phone", "EMAIL": "email", "URL": "url"}[name]
            item = {key: _unesc(value)}
            _put(item, "type", params.get("TYPE", ""))
            _put(item, "wa_id", params.get("X-WA-ID", ""))
            card.setdefault(key + "s", []).append(item)
        elif name == "ORG":
            company, department = [*_SPLIT.split(value, 1), ""][:2]
            org = card.setdefault("org", {})
            _put(org, "company", _unesc(company))
            _put(org, "department", _unesc(department))
        elif name == "TITLE":
            _put(card.setdefault("org", {}), "title", _unesc(value))
        elif name == "ADR":
            fields = _SPLIT.split(value)[2:]
            adr: dict[str, str] = {}
            for key, part in zip(_ADR, fields, strict=False):
                _put(adr, key, _unesc(part))
            _put(adr, "type", params.get("TYPE", ""))
            _put(adr, "country_code", params.get("X-COUNTRY-CODE", ""))
            card.setdefault("addresses", []).append(adr)
    if card is not None or not contacts:
        raise TranslationError("contacts", "expected complete vCards")
    return contacts
