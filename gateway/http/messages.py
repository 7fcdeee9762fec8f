"""Provider routes of the relay (DESIGN §4.4-4.5): messages, receipts, typing, lookup."""

from __future__ import annotations

from aiohttp import web

from gateway.errors import UnknownRecipient
from gateway.http.app_keys import AUDIT, AUDIT_LOG, CONFIG, REACH, RELAY
from gateway.http.auth import current_provider, requires_scope
from gateway.http.body import decode_json, json_response
from gateway.service.relay import AuditHook
from gateway.service.relay_types import (
    Accepted,
    LookupIn,
    LookupOut,
    MessageIn,
    ReceiptIn,
    TypingIn,
)
from gateway.store import Tx
from gateway.uris import split_user_uri

routes = web.RouteTableDef()


def provider(request: web.Request) -> str:
    """The calling provider's client id (its scopes were checked by the auth middleware)."""
    client_id = current_provider(request).client_id
    assert client_id is not None
    return client_id


async def require_reach(
    request: web.Request, client_id: str, recipient: str, functionality: str | None = None
) -> None:
    """Refuse what the provider is not approved for; an unreachable recipient is unknown."""
    reach = request.app[REACH]
    if functionality is not None:
        await reach.require_functionality(client_id, functionality)
    if not await reach.allows(recipient, client_id):
        # The relay's own answer for a user who does not exist, byte for byte.
        raise UnknownRecipient("No such user is reachable by you.", field="$.to")


def audited(request: web.Request, *subjects: str) -> AuditHook | None:
    """Write this request's audit record (202) inside the relay's accepting unit."""
    ctx = request.get(AUDIT)
    if ctx is None:
        return None
    audit_log = request.app[AUDIT_LOG]
    # The recipient's service, for the exchange matrix of the compliance report.
    recipient = split_user_uri(subjects[-1]) if subjects else None
    if recipient is not None and recipient.authority in request.app[CONFIG].services:
        ctx.attrs["service"] = recipient.authority

    async def hook(tx: Tx) -> object:
        return await audit_log.append_in(tx, ctx, status=202, subjects=subjects)

    return hook


@routes.post("/v1/messages")
@requires_scope("messages")
async def send_message(request: web.Request) -> web.Response:
    """Accept a message for a platform user (202; idempotent on the message id)."""
    client_id = provider(request)
    body = await decode_json(request, MessageIn)
    await require_reach(request, client_id, body.recipient)
    gateway_id = await request.app[RELAY].send_message(
        client_id, body, audit=audited(request, body.sender, body.recipient)
    )
    return json_response(Accepted(id=gateway_id), status=202)


@routes.post("/v1/receipts")
@requires_scope("messages")
async def send_receipt(request: web.Request) -> web.Response:
    """Accept a delivered/read receipt for a message a platform user sent."""
    client_id = provider(request)
    body = await decode_json(request, ReceiptIn)
    await require_reach(request, client_id, body.recipient, "receipts")
    gateway_id = await request.app[RELAY].send_receipt(
        client_id, body, audit=audited(request, body.sender, body.recipient)
    )
    return json_response(Accepted(id=gateway_id), status=202)


@routes.post("/v1/typing")
@requires_scope("messages")
async def send_typing(request: web.Request) -> web.Response:
    """Accept a typing signal."""
    client_id = provider(request)
    body = await decode_json(request, TypingIn)
    await require_reach(request, client_id, body.recipient, "typing")
    gateway_id = await request.app[RELAY].send_typing(
        client_id, body, audit=audited(request, body.sender, body.recipient)
    )
    return json_response(Accepted(id=gateway_id), status=202)


@routes.post("/v1/lookup")
@requires_scope("lookup")
async def lookup(request: web.Request) -> web.Response:
    """Platform users by native identifier; only those who consented to the caller."""
    client_id = provider(request)
    body = await decode_json(request, LookupIn)
    if not await request.app[REACH].service_approved(client_id, body.service):
        # As if nobody there had consented: an unapproved service reveals no users.
        return json_response(LookupOut(users=[]))
    return json_response(await request.app[RELAY].lookup(client_id, body))
