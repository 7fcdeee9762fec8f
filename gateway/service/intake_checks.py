"""Checks of the contact details given with an interop request."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from gateway.errors import ValidationFailed
from gateway.service.egress import DestinationRefused, Egress

# Deliberately simple: one @, no spaces, a dotted domain. Deliverability is the requester's job.
_EMAIL = re.compile(
    r"^[^@\s]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+\Z"
)


def check_email(value: str, *, field: str) -> None:
    """Refuse what cannot be an email address."""
    if not _EMAIL.match(value):
        raise ValidationFailed("This is not an email address.", field=field)


def is_loopback(host: str) -> bool:
    """`localhost` or an address in 127.0.0.0/8 or ::1."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def check_webhook_url(value: str, *, field: str, egress: Egress) -> None:
    """An absolute https URL, no credentials, whose host resolves to addresses `egress` allows.

    Plain http only to loopback, where the operator allows loopback (local development).
    """
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ValidationFailed("This is not a valid URL.", field=field) from None
    host = parts.hostname or ""
    if parts.scheme not in ("https", "http") or not host:
        raise ValidationFailed("The webhook URL must be an absolute https URL.", field=field)
    if parts.scheme == "http" and not (egress.policy.allow_loopback and is_loopback(host)):
        raise ValidationFailed("The webhook URL must use https.", field=field)
    if parts.username is not None or parts.password is not None:
        raise ValidationFailed("The webhook URL must not carry credentials.", field=field)
    if parts.fragment:
        raise ValidationFailed("The webhook URL must not have a fragment.", field=field)
    if port == 0 or any(c.isspace() for c in value):
        raise ValidationFailed("This is not a valid URL.", field=field)
    try:
        await egress.check(host, port or 443)
    except DestinationRefused as exc:
        raise ValidationFailed(
            f"The webhook URL's host {exc.reason}; webhooks are sent to public addresses only.",
            field=field,
        ) from None
