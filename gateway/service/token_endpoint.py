"""The token endpoint: client_credentials with private_key_jwt (RFC 6749 §4.4, RFC 7523).

Every failure of the client assertion is `invalid_client` (RFC 7523 §3.2, RFC 6749 §5.2);
a suspended provider that authenticated correctly gets `unauthorized_client`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import jwt
import msgspec

from gateway.errors import OAuthError
from gateway.service import scopes as scope_names
from gateway.service.access_tokens import AccessTokens
from gateway.service.client_keys import ALGORITHMS, key_for_kid, signing_key
from gateway.service.providers import ProviderRegistry
from gateway.store import Store, Tx
from gateway.store.tokens import forget_expired_assertions, remember_assertion

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_JTI_MAX = 256
# Expired assertion ids are swept at most this often.
_SWEEP_EVERY_S = 60.0


class TokenResponse(msgspec.Struct, frozen=True, kw_only=True):
    access_token: str
    token_type: str = "Bearer"
    expires_in: int
    scope: str


def _invalid_client(description: str) -> OAuthError:
    return OAuthError("invalid_client", description, status=401)


class TokenEndpoint:
    """Exchange a provider's signed client assertion for an access token."""

    def __init__(
        self,
        store: Store,
        providers: ProviderRegistry,
        tokens: AccessTokens,
        *,
        audience: str,
        max_lifetime_s: int,
        leeway_s: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._providers = providers
        self._tokens = tokens
        self.audience = audience
        self._max_lifetime_s = max_lifetime_s
        self._leeway_s = leeway_s
        self._clock = clock
        self._last_sweep = 0.0

    async def exchange(self, params: Mapping[str, str]) -> TokenResponse:
        """Check the request and the assertion, remember its jti, issue the token."""
        grant_type = params.get("grant_type")
        if not grant_type:
            raise OAuthError("invalid_request", "The grant_type parameter is missing.")
        if grant_type != "client_credentials":
            raise OAuthError(
                "unsupported_grant_type", "Only the client_credentials grant is supported."
            )
        if params.get("client_assertion_type") != ASSERTION_TYPE:
            raise _invalid_client(f"client_assertion_type must be {ASSERTION_TYPE}.")
        assertion = params.get("client_assertion")
        if not assertion:
            raise _invalid_client("The client_assertion parameter is missing.")
        client_id, claims, provider_scopes = await self._verify(assertion)
        if params.get("client_id", client_id) != client_id:
            raise _invalid_client("client_id does not match the assertion's issuer.")
        granted = frozenset(provider_scopes)
        wanted = scope_names.parse_scope(params["scope"]) if "scope" in params else granted
        if not wanted or not wanted <= granted:
            raise OAuthError(
                "invalid_scope",
                f"The scope may only hold granted scopes: {' '.join(sorted(granted))}.",
            )
        await self._remember_jti(client_id, claims["jti"], int(claims["exp"]))
        scope = " ".join(scope_names.ordered(wanted))
        token, expires_in = self._tokens.issue(client_id, scope_names.ordered(wanted))
        return TokenResponse(access_token=token, expires_in=expires_in, scope=scope)

    async def _verify(self, assertion: str) -> tuple[str, dict[str, Any], list[str]]:
        try:
            header = jwt.get_unverified_header(assertion)
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise _invalid_client("The client assertion is not a well-formed JWT.") from None
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise _invalid_client(
                f"Algorithm {alg!r} is not accepted; use one of {', '.join(ALGORITHMS)}."
            )
        client_id = unverified.get("iss")
        if not isinstance(client_id, str) or not client_id:
            raise _invalid_client("The client assertion has no issuer (iss = client_id).")
        record = await self._providers.get(client_id)
        if record is None:
            raise _invalid_client("Unknown client.")
        kid = header.get("kid")
        key = signing_key(record.jwks, kid if isinstance(kid, str) else None, alg)
        if key is None:
            if key_for_kid(record.jwks, kid) is not None:
                raise _invalid_client(f"Key {kid!r} cannot verify {alg} signatures.")
            raise _invalid_client("No registered key matches the assertion's kid.")
        try:
            claims: dict[str, Any] = jwt.decode(
                assertion,
                key,
                algorithms=[alg],
                audience=self.audience,
                issuer=client_id,
                leeway=self._leeway_s,
                options={"require": ["iss", "sub", "aud", "exp", "iat", "jti"]},
            )
        except jwt.ExpiredSignatureError:
            raise _invalid_client("The client assertion has expired.") from None
        except jwt.InvalidAudienceError:
            raise _invalid_client(f"The assertion's aud must be {self.audience}.") from None
        except jwt.ImmatureSignatureError:
            raise _invalid_client("The client assertion is not valid yet (iat/nbf).") from None
        except jwt.MissingRequiredClaimError as exc:
            raise _invalid_client(f"The client assertion lacks the {exc.claim} claim.") from None
        except jwt.PyJWTError:
            raise _invalid_client("The client assertion's signature does not verify.") from None
        self._check_claims(claims, client_id)
        if record.provider.state != "active":
            raise OAuthError("unauthorized_client", "This provider is suspended.")
        return client_id, claims, record.provider.scopes

    def _check_claims(self, claims: dict[str, Any], client_id: str) -> None:
        if claims.get("sub") != client_id:
            raise _invalid_client("The assertion's sub must equal its iss (the client_id).")
        exp = claims["exp"]
        if not isinstance(exp, int | float) or not isinstance(claims["iat"], int | float):
            raise _invalid_client("exp and iat must be NumericDate values.")
        if exp > self._clock() + self._max_lifetime_s + self._leeway_s:
            raise _invalid_client(
                f"The client assertion may expire at most {self._max_lifetime_s} s ahead."
            )
        jti = claims["jti"]
        if not isinstance(jti, str) or not 0 < len(jti) <= _JTI_MAX:
            raise _invalid_client(f"jti must be a string of 1 to {_JTI_MAX} characters.")

    async def _remember_jti(self, client_id: str, jti: str, exp: int) -> None:
        """Store the assertion id until it expires; seeing it again is a replay."""
        now = self._clock()
        sweep = now - self._last_sweep >= _SWEEP_EVERY_S
        if sweep:
            self._last_sweep = now
        # Kept past exp by the leeway, the window in which the assertion would still pass.
        keep_until = (exp + self._leeway_s) * 1000

        async def unit(tx: Tx) -> bool:
            if sweep:
                await forget_expired_assertions(tx, before=int(now * 1000))
            return await remember_assertion(tx, client_id, jti, until=keep_until)

        if not await self._store.write("oauth_assertion_seen", unit):
            raise _invalid_client("This client assertion was used before (jti replay).")
