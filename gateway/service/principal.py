"""Who is asking: the principal a request acts as, set by authentication, read by audit."""

from __future__ import annotations

from typing import Literal

import msgspec

PrincipalKind = Literal["provider", "admin", "platform", "anonymous"]


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """The authenticated party of a request; `client_id` only for providers."""

    kind: PrincipalKind
    client_id: str | None = None
    scopes: frozenset[str] = frozenset()


ANONYMOUS = Principal(kind="anonymous")
ADMIN = Principal(kind="admin")
