"""Sandbox admin routes (DESIGN §4.8): simulated platform users, their sends and inboxes."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from aiohttp import web
from msgspec import Meta

from gateway.errors import NotFound, ValidationFailed
from gateway.http.app_keys import SANDBOX
from gateway.http.body import decode_json, json_response
from gateway.http.guards import require_admin
from gateway.platforms.sandbox import SandboxPlatform

routes = web.RouteTableDef()

NativeId = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+\Z")]
MemberUri = Annotated[str, Meta(min_length=1, max_length=256)]
ClientIds = list[Annotated[str, Meta(min_length=1, max_length=128)]] | Literal["all"]


class _In(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class NewUser(_In, frozen=True):
    service: Literal["whatsapp", "messenger", "instagram"]
    id: NativeId
    name: Annotated[str, Meta(min_length=1, max_length=128)]
    consent: ClientIds = []


class ConsentChange(_In, frozen=True):
    user: str
    consent: ClientIds


class SandboxSend(_In, frozen=True, rename={"sender": "from", "recipient": "to"}):
    sender: str
    recipient: str
    content: dict[str, Any]


class NewGroup(_In, frozen=True):
    service: Literal["whatsapp", "messenger", "instagram"]
    creator: str
    name: Annotated[str, Meta(min_length=1, max_length=128)]
    members: Annotated[list[MemberUri], Meta(max_length=1024)]


class Outage(_In, frozen=True):
    service: Literal["whatsapp", "messenger", "instagram"]
    down: bool


def _sandbox(request: web.Request) -> SandboxPlatform:
    require_admin(request)
    sandbox = request.app.get(SANDBOX)
    if sandbox is None:
        raise NotFound("The sandbox platforms are not enabled (platforms = http).")
    return sandbox


@routes.post("/sandbox/v1/users")
async def create_user(request: web.Request) -> web.Response:
    """Create a simulated platform user with its own Olm account."""
    sandbox = _sandbox(request)
    body = await decode_json(request, NewUser)
    uri = await sandbox.create_user(body.service, body.id, body.name, body.consent)
    return json_response({"uri": uri}, status=201)


@routes.put("/sandbox/v1/consent")
async def change_consent(request: web.Request) -> web.Response:
    """A simulated user grants or revokes consent; providers get `consent` events."""
    sandbox = _sandbox(request)
    body = await decode_json(request, ConsentChange)
    await sandbox.change_consent(body.user, body.consent)
    return json_response({"user": body.user, "consent": body.consent})


@routes.post("/sandbox/v1/send")
async def send(request: web.Request) -> web.Response:
    """A simulated user sends MIMI content (translated and encrypted by the sandbox); to a group
    URI, as a Megolm message after sharing a new session when the group's epoch moved."""
    sandbox = _sandbox(request)
    body = await decode_json(request, SandboxSend)
    gateway_id = await sandbox.send(body.sender, body.recipient, body.content)
    return json_response({"id": gateway_id}, status=202)


@routes.post("/sandbox/v1/groups")
async def create_group(request: web.Request) -> web.Response:
    """A simulated user creates a group hosted on its service (DESIGN §4.10)."""
    sandbox = _sandbox(request)
    body = await decode_json(request, NewGroup)
    state = await sandbox.create_group(body.service, body.creator, body.name, body.members)
    return json_response(state, status=201)


@routes.get("/sandbox/v1/inbox")
async def inbox(request: web.Request) -> web.Response:
    """What a simulated user received: decrypted native webhook envelopes."""
    sandbox = _sandbox(request)
    user = request.query.get("user")
    if not user:
        raise ValidationFailed("The `user` query parameter is required.", field="user")
    return json_response({"items": await sandbox.inbox(user)})


@routes.post("/sandbox/v1/outage")
async def outage(request: web.Request) -> web.Response:
    """Take a simulated service down or bring it back (deliveries are retried meanwhile)."""
    sandbox = _sandbox(request)
    body = await decode_json(request, Outage)
    sandbox.set_outage(body.service, body.down)
    return json_response({"service": body.service, "down": body.down})
