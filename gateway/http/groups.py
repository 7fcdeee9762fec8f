"""Group routes (DESIGN §4.10): create and read groups, change membership, share room keys,
send group messages. `{group_id}` is the last segment of the group URI
`mimi://<service>/g/<group_id>` (ids are unique across services)."""

from __future__ import annotations

from aiohttp import web

from gateway.http.app_keys import AUDIT, AUDIT_LOG, GROUPS
from gateway.http.auth import requires_scope
from gateway.http.body import decode_json, json_response
from gateway.http.messages import provider
from gateway.service.group_types import (
    GroupCreateIn,
    GroupMessageIn,
    MembersAddIn,
    MembersRemoveIn,
    RoomKeysIn,
)
from gateway.service.groups import GroupAudit
from gateway.service.relay_types import Accepted
from gateway.store import Tx

routes = web.RouteTableDef()


def audited(request: web.Request, status: int) -> GroupAudit | None:
    """Write this request's audit record (with `status`) inside the group unit."""
    ctx = request.get(AUDIT)
    if ctx is None:
        return None
    audit_log = request.app[AUDIT_LOG]

    async def hook(tx: Tx, subjects: list[str], attrs: dict[str, str | int]) -> object:
        return await audit_log.append_in(tx, ctx, status=status, subjects=subjects, attrs=attrs)

    return hook


@routes.post("/v1/groups")
@requires_scope("messages")
async def create_group(request: web.Request) -> web.Response:
    """Create a group on its hub service (201; the same `id` and body again: the group)."""
    client_id = provider(request)
    body = await decode_json(request, GroupCreateIn)
    state, created = await request.app[GROUPS].create(client_id, body, audit=audited(request, 201))
    return json_response(state, status=201 if created else 200)


@routes.get("/v1/groups/{group_id}")
@requires_scope("messages")
async def read_group(request: web.Request) -> web.Response:
    """The group's state, for providers with a current member (404 for anyone else)."""
    client_id = provider(request)
    return json_response(
        await request.app[GROUPS].state(client_id, request.match_info["group_id"])
    )


@routes.post("/v1/groups/{group_id}/members")
@requires_scope("messages")
async def add_members(request: web.Request) -> web.Response:
    """Admins add members; the epoch grows by one."""
    client_id = provider(request)
    body = await decode_json(request, MembersAddIn)
    state = await request.app[GROUPS].add(
        client_id, request.match_info["group_id"], body, audit=audited(request, 200)
    )
    return json_response(state)


@routes.post("/v1/groups/{group_id}/members/remove")
@requires_scope("messages")
async def remove_members(request: web.Request) -> web.Response:
    """Admins remove members, anyone removes themself (leaves); the epoch grows by one."""
    client_id = provider(request)
    body = await decode_json(request, MembersRemoveIn)
    state = await request.app[GROUPS].remove(
        client_id, request.match_info["group_id"], body, audit=audited(request, 200)
    )
    return json_response(state)


@routes.post("/v1/groups/{group_id}/keys")
@requires_scope("messages")
async def share_room_keys(request: web.Request) -> web.Response:
    """Relay a member's Megolm session, one Olm share per other current member (202)."""
    client_id = provider(request)
    body = await decode_json(request, RoomKeysIn)
    gateway_id = await request.app[GROUPS].share_keys(
        client_id, request.match_info["group_id"], body, audit=audited(request, 202)
    )
    return json_response(Accepted(id=gateway_id), status=202)


@routes.post("/v1/groups/{group_id}/messages")
@requires_scope("messages")
async def send_group_message(request: web.Request) -> web.Response:
    """Accept a group message for the members of the current epoch (202; idempotent on id)."""
    client_id = provider(request)
    body = await decode_json(request, GroupMessageIn)
    gateway_id = await request.app[GROUPS].send(
        client_id, request.match_info["group_id"], body, audit=audited(request, 202)
    )
    return json_response(Accepted(id=gateway_id), status=202)
