"""Python SDK for third-party messengers: onboarding, Olm keys, encrypted sends, events."""

from gateway.sdk.auth import SigningKey, TokenError, TokenSource, request_interop, request_status
from gateway.sdk.client import GatewayError, InteropClient, Sent
from gateway.sdk.events import Event, GroupChange, Message, Notice, Receipt, Typing
from gateway.sdk.state import SdkState
from gateway.sdk.transparency import KeyTransparencyError, UnpublishedKeyChange

__all__ = [
    "Event",
    "GatewayError",
    "GroupChange",
    "InteropClient",
    "KeyTransparencyError",
    "Message",
    "Notice",
    "Receipt",
    "SdkState",
    "Sent",
    "SigningKey",
    "TokenError",
    "TokenSource",
    "Typing",
    "UnpublishedKeyChange",
    "request_interop",
    "request_status",
]
