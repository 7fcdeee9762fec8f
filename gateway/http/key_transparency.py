"""Key transparency routes (DESIGN §4.12): the signed head, consistency proofs, a user's history.

The head and consistency proofs are public: auditors and anyone who kept an older head check the
log only grew. A user's key history goes to the user's own provider only.
"""

from __future__ import annotations

from aiohttp import web

from gateway.errors import Forbidden, UnknownRecipient, ValidationFailed
from gateway.http.app_keys import KEY_TRANSPARENCY
from gateway.http.auth import public, requires_scope
from gateway.http.body import json_response
from gateway.http.key_routes import require_provider
from gateway.service.transparency import head_json
from gateway.uris import parse_user_uri

routes = web.RouteTableDef()

NO_STORE = {"Cache-Control": "no-store"}


def _size(request: web.Request, name: str) -> int:
    text = request.query.get(name, "")
    if not text.isdigit() or len(text) > 18:
        raise ValidationFailed(f"`{name}` must be a tree size (a whole number).", field=name)
    return int(text)


@routes.get("/v1/key-transparency/head")
@public()
async def head(request: web.Request) -> web.Response:
    """The newest signed tree head."""
    latest = await request.app[KEY_TRANSPARENCY].latest_head()
    return json_response(head_json(latest), headers=NO_STORE)


@routes.get("/v1/key-transparency/consistency")
@public()
async def consistency(request: web.Request) -> web.Response:
    """RFC 9162 §2.1.4 proof that the tree of `to` leaves extends the tree of `from` leaves."""
    old, new = _size(request, "from"), _size(request, "to")
    proof = await request.app[KEY_TRANSPARENCY].consistency(old, new)
    return json_response({"from": old, "to": new, "proof": proof})


@routes.get("/v1/key-transparency/history")
@requires_scope("keys")
async def history(request: web.Request) -> web.Response:
    """Every logged version of one of the provider's own users' keys, with inclusion proofs."""
    who = require_provider(request, "keys")
    uri = parse_user_uri(request.query.get("user", ""))
    if uri is None:
        raise ValidationFailed("Not a user URI (mimi://<client_id>/u/<id>).", field="user")
    if uri.authority != who.client_id:
        raise Forbidden("A provider reads the key history of its own users only.", field="user")
    answer = await request.app[KEY_TRANSPARENCY].history(str(uri))
    if answer is None:
        raise UnknownRecipient()
    return json_response(answer, headers=NO_STORE)
