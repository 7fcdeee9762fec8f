"""Stable action names of the routes of the contract (DESIGN §4), the vocabulary of the log.

Reports and auditors count on these names, so they change only with a new record format.
A route missing here is named "<METHOD> <route template>"; a service may name its record's
action itself (`AuditLog.append_in(..., action=...)`).
"""

from __future__ import annotations

ROUTE_ACTIONS: dict[tuple[str, str], str] = {
    ("GET", "/healthz"): "ops.health",
    ("GET", "/readyz"): "ops.ready",
    ("GET", "/metrics"): "ops.metrics",
    ("GET", "/openapi.json"): "offer.openapi",
    ("GET", "/.well-known/dma-interop"): "offer.read",
    ("GET", "/.well-known/jwks.json"): "offer.jwks",
    ("POST", "/v1/interop-requests"): "interop_request.submit",
    ("GET", "/v1/interop-requests/{id}"): "interop_request.status",
    ("GET", "/admin/v1/interop-requests"): "interop_request.list",
    ("POST", "/admin/v1/interop-requests/{id}/decision"): "interop_request.decide",
    ("GET", "/admin/v1/interop-requests/{id}"): "interop_request.show",
    ("POST", "/admin/v1/interop-requests/{id}/plan"): "interop_request.plan",
    ("POST", "/admin/v1/interop-requests/{id}/live"): "interop_request.live",
    ("POST", "/admin/v1/interop-requests/{id}/extend"): "interop_request.extend",
    ("POST", "/admin/v1/interop-requests/{id}/review"): "interop_request.review",
    ("POST", "/v1/interop-requests/{id}/comments"): "interop_request.comment",
    ("POST", "/v1/interop-requests/{id}/dispute"): "interop_request.dispute",
    ("POST", "/admin/v1/providers/{client_id}/suspend"): "provider.suspend",
    ("POST", "/admin/v1/providers/{client_id}/resume"): "provider.resume",
    ("POST", "/v1/oauth/token"): "token.issue",
    ("PUT", "/v1/users/{user}/keys"): "keys.publish",
    ("GET", "/v1/keys"): "keys.claim",
    ("GET", "/v1/key-transparency/head"): "kt.head",
    ("GET", "/v1/key-transparency/consistency"): "kt.consistency",
    ("GET", "/v1/key-transparency/history"): "kt.history",
    ("POST", "/v1/lookup"): "user.lookup",
    ("POST", "/v1/messages"): "message.accept",
    ("POST", "/v1/receipts"): "receipt.accept",
    ("POST", "/v1/typing"): "typing.accept",
    ("POST", "/v1/groups"): "group.create",
    ("GET", "/v1/groups/{group_id}"): "group.read",
    ("POST", "/v1/groups/{group_id}/members"): "group.members_add",
    ("POST", "/v1/groups/{group_id}/members/remove"): "group.members_remove",
    ("POST", "/v1/groups/{group_id}/keys"): "group.room_keys",
    ("POST", "/v1/groups/{group_id}/messages"): "group.message",
    ("POST", "/v1/media"): "media.upload",
    ("GET", "/v1/media/{id}"): "media.download",
    ("GET", "/v1/events"): "events.pull",
    ("POST", "/v1/events/ack"): "events.ack",
    ("GET", "/v1/events/ws"): "events.stream",
    ("POST", "/platform/v1/{service}/webhook"): "platform.webhook",
    ("POST", "/sandbox/v1/users"): "sandbox.user_create",
    ("POST", "/sandbox/v1/send"): "sandbox.send",
    ("POST", "/sandbox/v1/groups"): "sandbox.group_create",
    ("GET", "/sandbox/v1/inbox"): "sandbox.inbox",
    ("PUT", "/sandbox/v1/consent"): "sandbox.consent",
    ("POST", "/sandbox/v1/outage"): "sandbox.outage",
    ("GET", "/platform/v1/{service}/webhook"): "platform.webhook_verify",
    ("GET", "/admin/v1/audit"): "audit.export",
    ("GET", "/"): "portal.home",
    ("GET", "/docs"): "portal.docs",
    ("GET", "/assets/{name}"): "portal.asset",
    ("GET", "/problems/{name}"): "portal.problem",
    ("GET", "/requests"): "portal.tracker",
    ("GET", "/requests/{id}"): "portal.request",
    ("POST", "/requests/{id}/status"): "portal.requester_status",
}

# Internal events (AuditLog.record_event / event_in), listed for the report and auditors.
EVENT_ACTIONS: dict[str, str] = {
    "message.deliver": "a message was handed to its recipient (attrs: service, kind, direction)",
    "message.deliver_failed": "delivery of a message failed for good (attrs: service, reason)",
    "keys.claimed": "a one-time key was handed out",
    "kt.head_signed": "a key transparency tree head was signed (attrs: tree_size, key_id)",
    "group.create": "a platform user created a group (attrs: service, members)",
    "group.members": "a platform user changed a group's membership (attrs: epoch, added, removed)",
    "group.room_keys": "a platform user shared a Megolm session (attrs: epoch, shares: a count)",
    "group.message": "a platform user sent a group message (attrs: epoch, recipients, type)",
    "interop_request.decided": "an interop request was approved or rejected",
    "provider.suspended": "a provider was suspended",
    "provider.resumed": "a provider was resumed",
}

UNMATCHED = {404: "http.not_found", 405: "http.method_not_allowed"}


def action_for(method: str, route: str) -> str:
    """The action name of a request to `route` (a template) with `method`."""
    return ROUTE_ACTIONS.get((method, route)) or f"{method} {route}"
