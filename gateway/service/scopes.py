"""The OAuth scope vocabulary of provider access tokens and what each functionality grants."""

from __future__ import annotations

from collections.abc import Iterable

# Send messages, receipts and typing signals.
MESSAGES = "messages"
# Pull or stream events (and receive them by webhook).
EVENTS = "events"
# Publish the provider's own users' keys; claim platform users' keys.
KEYS = "keys"
# Discover platform users who consented to this provider.
LOOKUP = "lookup"
# Upload and download encrypted media.
MEDIA = "media"

SCOPES: tuple[str, ...] = (MESSAGES, EVENTS, KEYS, LOOKUP, MEDIA)

# Every messaging functionality needs to send, receive, exchange keys and find its peers.
BASE_SCOPES = frozenset({MESSAGES, EVENTS, KEYS, LOOKUP})
# Functionalities that carry attachments also need the media store.
MEDIA_FUNCTIONALITIES = frozenset({"images", "voice_messages", "video", "files", "group_files"})


def scopes_for(functionalities: Iterable[str]) -> frozenset[str]:
    """Scopes granted for the requested functionalities; none requested means all of them."""
    wanted = frozenset(functionalities)
    if not wanted:
        return frozenset(SCOPES)
    scopes = set(BASE_SCOPES)
    if wanted & MEDIA_FUNCTIONALITIES:
        scopes.add(MEDIA)
    return frozenset(scopes)


def ordered(scopes: Iterable[str]) -> list[str]:
    """Scopes in the canonical vocabulary order (stable tokens, stable answers)."""
    present = set(scopes)
    return [s for s in SCOPES if s in present]


def parse_scope(value: str) -> frozenset[str]:
    """An RFC 6749 §3.3 scope parameter: space-delimited, case-sensitive."""
    return frozenset(part for part in value.split(" ") if part)
