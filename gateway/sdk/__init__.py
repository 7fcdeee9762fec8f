"""Python SDK for third-party messengers: onboarding, Olm keys, encrypted sends, events."""

from gateway.sdk.auth import SigningKey, TokenError, TokenSource, request_interop, request_status
from gateway.sdk.client import GatewayError, InteropClient, Sent
from gateway.sdk.events import Event, GroupChange, Message, Notice, Receipt, Typing
from gateway.sdk.state import SdkState

__all__ = [
    "Event",
    "GatewayError",
    "GroupChange",
    "InteropClient",
    "Message",
    "Notice",
    "Receipt",
    "SdkState",
    "Sent",
    "SigningKey",
    "TokenError",
    "TokenSource",
    "Typing",
    "request_interop",
    "request_status",
]
