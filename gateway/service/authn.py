"""Authentication of provider requests: access token -> principal, cheap on the hot path."""

from __future__ import annotations

import time
from collections.abc import Callable

from gateway.errors import InvalidToken, ProviderSuspended
from gateway.service.access_tokens import AccessClaims, AccessTokens
from gateway.service.principal import Principal
from gateway.service.providers import ProviderRegistry


class ProviderAuthenticator:
    """Verify Bearer access tokens; refuse unknown or suspended providers at once.

    A verified token is cached (keyed by the token string, until its exp), so a request pays
    a dict look-up instead of a signature check. The provider's state is checked on every
    request, from the registry's short-lived cache, so a suspension needs no token revocation.
    """

    def __init__(
        self,
        tokens: AccessTokens,
        providers: ProviderRegistry,
        *,
        cache_max: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._tokens = tokens
        self._providers = providers
        self._cache_max = cache_max
        self._clock = clock
        self._verified: dict[str, tuple[Principal, int]] = {}

    def _claims(self, token: str) -> tuple[Principal, int]:
        now = self._clock()
        hit = self._verified.get(token)
        if hit is not None:
            if hit[1] > now:
                return hit
            del self._verified[token]
        claims: AccessClaims = self._tokens.verify(token)
        entry = (
            Principal(kind="provider", client_id=claims.client_id, scopes=claims.scopes),
            claims.exp,
        )
        if len(self._verified) >= self._cache_max:
            self._evict(now)
        self._verified[token] = entry
        return entry

    def _evict(self, now: float) -> None:
        for key in [k for k, (_, exp) in self._verified.items() if exp <= now]:
            del self._verified[key]
        # Still full of live tokens: drop the oldest half (dicts keep insertion order).
        if len(self._verified) >= self._cache_max:
            for key in list(self._verified)[: max(1, len(self._verified) // 2)]:
                del self._verified[key]

    async def authenticate(self, token: str) -> Principal:
        """The provider principal of `token`, or InvalidToken / ProviderSuspended."""
        principal, _ = await self.authenticate_until(token)
        return principal

    async def authenticate_until(self, token: str) -> tuple[Principal, int]:
        """`authenticate`, with the token's expiry (Unix seconds) for long-lived streams."""
        principal, exp = self._claims(token)
        assert principal.client_id is not None
        state = await self._providers.state(principal.client_id)
        if state is None:
            raise InvalidToken("The access token's provider is not registered.")
        if state != "active":
            raise ProviderSuspended(
                "This provider is suspended; no request of it is served until it is resumed."
            )
        return principal, exp
