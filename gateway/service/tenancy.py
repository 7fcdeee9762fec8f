"""Tenant isolation: a provider sees and changes only its own objects.

The pattern for every provider-facing route: scope the query by owner
(`... WHERE id = $1 AND client_id = $2`) or, when an object is loaded by id alone, pass it
through `require_owner`. Either way another provider's object answers exactly like a missing
one (same status, type, title and detail), so ids cannot be probed across tenants.
"""

from __future__ import annotations

from typing import TypeVar

from gateway.errors import NotFound

T = TypeVar("T")


def not_found(what: str) -> NotFound:
    """The one answer for an object that is missing or belongs to someone else."""
    return NotFound(f"No {what} with this id.")


def require_owner(obj: T | None, *, owner: str | None, client_id: str, what: str) -> T:
    """`obj` when it exists and `client_id` owns it; otherwise the not-found answer."""
    if obj is None or owner is None or owner != client_id:
        raise not_found(what)
    return obj
