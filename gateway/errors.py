"""The one error hierarchy; the problem middleware renders it as RFC 9457 problem+json."""

from __future__ import annotations

from typing import Any, ClassVar


class GatewayError(Exception):
    """Base of every error a client may see; subclasses set status, type and title."""

    status: ClassVar[int] = 500
    type: ClassVar[str] = "about:blank"
    title: ClassVar[str] = "Internal Server Error"

    def __init__(
        self,
        detail: str = "",
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.field = field
        self.headers = headers or {}
        self.extra = extra


class BadRequest(GatewayError):
    status, type, title = 400, "/problems/bad-request", "Bad request"


class MalformedJSON(GatewayError):
    status, type, title = 400, "/problems/malformed-json", "Malformed JSON"


class InvalidEncoding(GatewayError):
    status, type, title = 400, "/problems/invalid-encoding", "Body is not valid UTF-8"


class Unauthorized(GatewayError):
    status, type, title = 401, "/problems/unauthorized", "Unauthorized"


class InvalidToken(Unauthorized):
    """A Bearer access token that is malformed, expired, revoked or not ours (RFC 6750 §3.1)."""

    type, title = "/problems/invalid-token", "Invalid access token"

    def __init__(self, detail: str = "", **kw: Any) -> None:
        challenge = 'Bearer realm="dma-gateway", error="invalid_token"'
        super().__init__(detail, headers={"WWW-Authenticate": challenge}, **kw)


class Forbidden(GatewayError):
    status, type, title = 403, "/problems/forbidden", "Forbidden"


class InsufficientScope(Forbidden):
    """The access token lacks the scope this route requires (RFC 6750 §3.1)."""

    type, title = "/problems/insufficient-scope", "Insufficient scope"

    def __init__(self, detail: str = "", *, scope: str, **kw: Any) -> None:
        challenge = f'Bearer realm="dma-gateway", error="insufficient_scope", scope="{scope}"'
        super().__init__(
            detail, headers={"WWW-Authenticate": challenge}, required_scope=scope, **kw
        )


class ProviderSuspended(Forbidden):
    type, title = "/problems/provider-suspended", "Provider suspended"


class NotFound(GatewayError):
    status, type, title = 404, "/problems/not-found", "Not found"


class UnknownRecipient(GatewayError):
    """No such user, or one who has not consented to this provider: the two look the same."""

    status, type, title = 404, "/problems/unknown-recipient", "Unknown recipient"

    def __init__(self, detail: str = "", **kw: Any) -> None:
        # One fixed detail, so that "missing" and "did not consent" cannot be told apart.
        super().__init__("No such user, or not reachable by this provider.", **kw)


class MethodNotAllowed(GatewayError):
    status, type, title = 405, "/problems/method-not-allowed", "Method not allowed"


class RequestTimeout(GatewayError):
    status, type, title = 408, "/problems/request-timeout", "Request timeout"


class Conflict(GatewayError):
    status, type, title = 409, "/problems/conflict", "Conflict"


class SenderNotOwned(Forbidden):
    type, title = "/problems/sender-not-owned", "Sender is not the caller's user"


class InvalidSignature(Unauthorized):
    type, title = "/problems/invalid-signature", "Invalid signature"


class IdempotencyConflict(Conflict):
    type, title = "/problems/idempotency-conflict", "Idempotency key reused with another body"


class InvalidCursor(GatewayError):
    status, type, title = 400, "/problems/invalid-cursor", "Invalid event cursor"


class PayloadTooLarge(GatewayError):
    status, type, title = 413, "/problems/payload-too-large", "Payload too large"


class MediaQuotaExceeded(PayloadTooLarge):
    # 413, not 507: the provider's own share is full, not the server; the client can act on it
    # (wait for its media to expire, send smaller files) and operators are not paged by a 5xx.
    status, type, title = 413, "/problems/media-quota-exceeded", "Media storage quota exceeded"


class UnsupportedMediaType(GatewayError):
    status, type, title = 415, "/problems/unsupported-media-type", "Unsupported media type"


class ValidationFailed(GatewayError):
    status, type, title = 422, "/problems/validation", "Validation failed"


class E2EERequired(ValidationFailed):
    type, title = "/problems/e2ee-required", "End-to-end encryption required"


class ContentRejected(ValidationFailed):
    # The content cannot be expressed on the recipient's service or breaks one of its limits.
    type, title = "/problems/content-rejected", "Content rejected"


class LimitExceeded(ValidationFailed):
    type, title = "/problems/limit-exceeded", "Limit exceeded"


class ClientClosed(GatewayError):
    """The client hung up before its request was read; nobody sees the answer (nginx's 499)."""

    status, type, title = 499, "/problems/client-closed", "Client closed request"


class RateLimited(GatewayError):
    status, type, title = 429, "/problems/rate-limited", "Too many requests"

    def __init__(self, detail: str = "", *, retry_after: int = 1, **kw: Any) -> None:
        super().__init__(detail, headers={"Retry-After": str(max(1, retry_after))}, **kw)


class Unavailable(GatewayError):
    status, type, title = 503, "/problems/unavailable", "Service unavailable"


class Overloaded(Unavailable):
    """Unavailable for now because of load; try again after Retry-After."""

    type, title = "/problems/overloaded", "Service overloaded"

    def __init__(self, detail: str = "", *, retry_after: int = 1, **kw: Any) -> None:
        super().__init__(detail, headers={"Retry-After": str(max(1, retry_after))}, **kw)


class OAuthError(GatewayError):
    """An RFC 6749 §5.2 error of the token endpoint, rendered as {error, error_description}."""

    status, type, title = 400, "/problems/oauth", "OAuth error"

    def __init__(self, error: str, description: str, *, status: int = 400) -> None:
        headers = {}
        if status == 401:
            headers["WWW-Authenticate"] = f'Bearer realm="dma-gateway", error="{error}"'
        super().__init__(description, headers=headers)
        self.error = error
        self.oauth_status = status


def _general_problems() -> dict[int, type[GatewayError]]:
    """The most general error class of each status: the one whose parent has another status."""
    found: dict[int, type[GatewayError]] = {}
    pending = list(GatewayError.__subclasses__())
    while pending:
        cls = pending.pop(0)
        parent = cls.__mro__[1]
        if cls.status not in found and getattr(parent, "status", None) != cls.status:
            found[cls.status] = cls
        pending.extend(cls.__subclasses__())
    return found


def problem_for_status(status: int) -> type[GatewayError] | None:
    """The general problem of an HTTP status (router and parser errors speak our vocabulary)."""
    return _GENERAL.get(status)


_GENERAL = _general_problems()
