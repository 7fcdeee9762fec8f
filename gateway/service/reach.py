"""Reachability: may provider P reach user U? One policy for every route (issue #16).

- A platform user: its service is enabled here and approved for P, and the user consented to P
  (Art. 7(7)).
- A third-party user: only its own provider, for now. Co-members of a group will reach each
  other too (DESIGN §4.10); `co_members` is the hook for that.

Whoever asks gets a bool and answers "no" exactly as for a user who does not exist, so a
provider cannot tell an unapproved service, a missing consent or another provider's user from
nobody at all. Functionalities (receipts, typing, ...) are checked apart, before any user is
looked at, so their refusal reveals nothing about users.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable

import msgspec

from gateway.errors import Forbidden
from gateway.service.providers import ProviderRecord
from gateway.uris import parse_user_uri

ConsentCheck = Callable[[str, str], Awaitable[bool]]  # allows(user_uri, client_id)
ProviderSource = Callable[[str], Awaitable[ProviderRecord | None]]  # ProviderRegistry.get
# Whether two users share a group (the contract's one case of cross-provider reach).
CoMembers = Callable[[str, str], Awaitable[bool]]


class Grants(msgspec.Struct, frozen=True):
    """What a provider was approved for; empty functionalities mean all of them (as scopes)."""

    services: frozenset[str]
    functionalities: frozenset[str]

    def allows_functionality(self, name: str) -> bool:
        return not self.functionalities or name in self.functionalities


NO_GRANTS = Grants(frozenset(), frozenset())


class Reach:
    """The reach policy, with each provider's grants cached for `ttl_s`."""

    def __init__(
        self,
        providers: ProviderSource,
        consent: ConsentCheck,
        *,
        enabled_services: Iterable[str],
        ttl_s: float = 5.0,
        co_members: CoMembers | None = None,
    ) -> None:
        self._providers = providers
        self._consent = consent
        self._enabled = frozenset(enabled_services)
        self._ttl = ttl_s
        self._co_members = co_members
        self._grants: dict[str, tuple[float, Grants]] = {}

    async def grants(self, client_id: str) -> Grants:
        """The services and functionalities `client_id` is approved for (none if unknown)."""
        now = time.monotonic()
        hit = self._grants.get(client_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        record = await self._providers(client_id)
        grants = (
            NO_GRANTS
            if record is None
            else Grants(
                frozenset(record.provider.services),
                frozenset(record.provider.functionalities),
            )
        )
        if len(self._grants) > 10_000:
            self._grants.clear()
        self._grants[client_id] = (now + self._ttl, grants)
        return grants

    async def service_approved(self, client_id: str, service: str) -> bool:
        """Whether `service` is enabled here and approved for `client_id`."""
        return service in self._enabled and service in (await self.grants(client_id)).services

    async def require_functionality(self, client_id: str, name: str) -> None:
        """Refuse (403) a provider not approved for functionality `name`."""
        if not (await self.grants(client_id)).allows_functionality(name):
            raise Forbidden(f"You are not approved for the '{name}' functionality.")

    async def allows(self, user: str, client_id: str) -> bool:
        """Whether provider `client_id` may reach `user` (a user URI)."""
        uri = parse_user_uri(user)
        if uri is None:
            return False
        if uri.is_platform:
            return await self.service_approved(client_id, uri.authority) and await self._consent(
                user, client_id
            )
        if uri.authority == client_id:
            return True
        return self._co_members is not None and await self._co_members(user, client_id)
