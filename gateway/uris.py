"""MIMI-style user URIs (DESIGN §4): `mimi://<service or client_id>/u/<local id>`.

The one parser of user URIs: the API validates with `parse_user_uri`; code that maps native
ids splits the URIs it built with `split_user_uri`.
"""

from __future__ import annotations

import re
from typing import NamedTuple

# Anchored with \Z: `$` also matches before a trailing newline, so "alice\n" would pass.
PLATFORM_SERVICES = frozenset({"whatsapp", "messenger", "instagram"})

AUTHORITY = re.compile(r"^[A-Za-z0-9._-]{1,64}\Z")
LOCAL_ID = re.compile(r"^[A-Za-z0-9._~+=@-]{1,128}\Z")
USER_URI_PATTERN = r"^mimi://([A-Za-z0-9._-]{1,64})/u/([A-Za-z0-9._~+=@-]{1,128})\Z"
_URI = re.compile(USER_URI_PATTERN)


class UserUri(NamedTuple):
    """A parsed user URI: `authority` is a service name or a provider's client_id."""

    authority: str
    local: str

    @property
    def is_platform(self) -> bool:
        """True for a gatekeeper service's user, False for a third-party provider's."""
        return self.authority in PLATFORM_SERVICES

    def __str__(self) -> str:
        return f"mimi://{self.authority}/u/{self.local}"


def parse_user_uri(text: str) -> UserUri | None:
    """The parsed URI, or None when `text` is not a well-formed user URI (what the API takes)."""
    match = _URI.match(text)
    return UserUri(match[1], match[2]) if match else None


def split_user_uri(text: str) -> UserUri | None:
    """The URI's two parts by its shape alone, or None: for URIs the gateway built itself from
    a service's native ids (which follow the service's rules, not the API's id pattern)."""
    if not text.startswith("mimi://"):
        return None
    authority, sep, local = text[7:].partition("/u/")
    if not sep or not authority or not local or "/" in authority:
        return None
    return UserUri(authority, local)


def user_uri(authority: str, local: str) -> str:
    """The URI of `local` at `authority` (a service or client_id)."""
    return str(UserUri(authority, local))
