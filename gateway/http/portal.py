"""Pages for people (DESIGN §4.11): the portal, the API reference, problem pages, the tracker.

Server-rendered with Jinja2; every page loads only this gateway's own assets (the Content
Security Policy says so to the browser). A client that prefers `application/json` gets JSON.
"""

from __future__ import annotations

import datetime as dt
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import msgspec
import swagger_ui_bundle
from aiohttp import web

from gateway.config import Config
from gateway.errors import BadRequest, GatewayError, NotFound, ValidationFailed
from gateway.http.app_keys import CONFIG, INTEROP_REQUESTS, REQUEST_TRACKER
from gateway.http.body import json_response
from gateway.http.ops import OPENAPI_PATH
from gateway.service.offer import build_offer

routes = web.RouteTableDef()

# Swagger UI (a maintained build shipped by the swagger-ui-bundle-v2 package) and our own files.
_SWAGGER = Path(swagger_ui_bundle.swagger_ui_path)
_OWN = resources.files("gateway.http").joinpath("static")
ASSETS: dict[str, tuple[Any, str]] = {
    "portal.css": (_OWN.joinpath("portal.css"), "text/css"),
    "docs-init.js": (_OWN.joinpath("docs-init.js"), "text/javascript"),
    "swagger-ui.css": (_SWAGGER / "swagger-ui.css", "text/css"),
    "swagger-ui-bundle.js": (_SWAGGER / "swagger-ui-bundle.js", "text/javascript"),
}
# Only our own origin; Swagger UI sets inline styles and shows data: images.
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'"
)
SERVICE_LABELS = {
    "whatsapp": "WhatsApp",
    "messenger": "Messenger",
    "instagram": "Instagram Direct",
}

_env = jinja2.Environment(
    loader=jinja2.PackageLoader("gateway.http", "templates"),
    autoescape=jinja2.select_autoescape(["html"]),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _day(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d")


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="seconds")


_env.filters["day"] = _day
_env.filters["iso"] = _iso


class ProblemPage(msgspec.Struct, frozen=True, kw_only=True):
    type: str
    title: str
    status: int
    description: str


_GENERIC = {
    400: "The request could not be read as sent; fix it before sending it again.",
    401: "The request needs credentials (a Bearer token) that were missing or not accepted.",
    403: "The credentials are valid but do not allow this request.",
    404: "Nothing is there, or it is not visible to the caller.",
    405: "The resource exists but not with this method.",
    408: "The body did not arrive in time.",
    409: "The request conflicts with the current state of the resource.",
    413: "The body or the stored data is larger than allowed.",
    415: "The body's media type is not one this route reads.",
    422: "The body was read but a value breaks a rule; `field` names it.",
    429: "Too many requests; wait for the seconds of `Retry-After`.",
    499: "The client went away before its request was read.",
    503: "The gateway cannot answer now; try again after `Retry-After`.",
}


def _all_errors() -> list[type[GatewayError]]:
    found: list[type[GatewayError]] = []
    pending = list(GatewayError.__subclasses__())
    while pending:
        cls = pending.pop(0)
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


def problem_pages() -> dict[str, ProblemPage]:
    """One page per problem `type` of the gateway's errors, by name (`/problems/<name>`)."""
    pages: dict[str, ProblemPage] = {}
    for cls in _all_errors():
        if not cls.type.startswith("/problems/"):
            continue
        name = cls.type.removeprefix("/problems/")
        if name in pages:
            continue
        doc = " ".join((cls.__doc__ or "").split()) if "__doc__" in vars(cls) else ""
        pages[name] = ProblemPage(
            type=cls.type,
            title=cls.title,
            status=cls.status,
            description=doc or _GENERIC.get(cls.status, cls.title + "."),
        )
    return dict(sorted(pages.items()))


@cache
def _operations() -> list[dict[str, str]]:
    document = msgspec.json.decode(OPENAPI_PATH.read_bytes())
    return [
        {"method": method.upper(), "path": path, "summary": op.get("summary", "")}
        for path, item in document["paths"].items()
        for method, op in item.items()
        if method in ("get", "post", "put", "delete", "patch")
    ]


def offer_services(config: Config) -> list[dict[str, Any]]:
    """The reference offer's services and functionalities, as the portal lists them."""
    offer = build_offer(config)
    services = []
    for name, service in offer["services"].items():
        limits = service["limits"]
        services.append(
            {
                "name": name,
                "label": SERVICE_LABELS.get(name, name),
                "e2ee": service["e2ee"]["policy"],
                "protocols": service["e2ee"]["protocols"],
                "text_max": limits["text_max"],
                "text_unit": limits["text_unit"].replace("_", " "),
                "group_max_members": limits["group_max_members"],
                "functionalities": [
                    {"name": f, "state": v["state"], "planned_for": v.get("planned_for")}
                    for f, v in service["functionalities"].items()
                ],
            }
        )
    return services


def wants_json(request: web.Request) -> bool:
    """True when the client prefers JSON to HTML (an explicit application/json, no text/html)."""
    accept = request.headers.get("Accept", "")
    return "application/json" in accept and "text/html" not in accept


def page(template: str, *, status: int = 200, **context: Any) -> web.Response:
    """A rendered page with the portal's security headers."""
    body = _env.get_template(template).render(**context)
    return web.Response(
        text=body,
        status=status,
        content_type="text/html",
        headers={
            "Content-Security-Policy": CSP,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        },
    )


@routes.get("/")
async def home(request: web.Request) -> web.Response:
    """The portal: what the gateway offers and how to request access."""
    config = request.app[CONFIG]
    services = offer_services(config)
    if wants_json(request):
        return json_response({"services": services, "links": _LINKS})
    return page(
        "home.html",
        title="Messaging interoperability",
        services=services,
        base_url=config.base_url,
        request_deadline_days=config.request_deadline_days,
        eligibility_working_days=config.requests.eligibility_working_days,
        problems=list(problem_pages().values()),
    )


_LINKS = {
    "offer": "/.well-known/dma-interop",
    "openapi": "/openapi.json",
    "docs": "/docs",
    "tracker": "/requests",
}


@routes.get("/docs")
async def docs(request: web.Request) -> web.StreamResponse:
    """The API reference, rendered from the OpenAPI document by Swagger UI (served here)."""
    if wants_json(request):
        raise web.HTTPFound("/openapi.json")
    return page("docs.html", title="API reference", operations=_operations())


@routes.get("/assets/{name}")
async def asset(request: web.Request) -> web.Response:
    """A static file of the pages (stylesheet, scripts)."""
    found = ASSETS.get(request.match_info["name"])
    if found is None:
        raise NotFound("No such asset.")
    path, content_type = found
    return web.Response(
        body=path.read_bytes(),
        content_type=content_type,
        headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
    )


@routes.get("/problems/{name}")
async def problem(request: web.Request) -> web.Response:
    """The page a problem document's `type` names."""
    found = problem_pages().get(request.match_info["name"])
    if found is None:
        raise NotFound("No such problem type.")
    if wants_json(request):
        return json_response(found)
    return page("problem.html", title=found.title, problem=found)


@routes.get("/requests")
async def tracker(request: web.Request) -> web.Response:
    """The public tracker of interop requests."""
    items = await request.app[REQUEST_TRACKER].public_list()
    if wants_json(request):
        return json_response({"items": items})
    return page("tracker.html", title="Request tracker", requests=items)


@routes.get("/requests/{id}")
async def tracked_request(request: web.Request) -> web.Response:
    """One request of the public tracker, with its deadlines and communications log."""
    found = await request.app[REQUEST_TRACKER].public_view(request.match_info["id"])
    if wants_json(request):
        return json_response(found)
    return page("request.html", title=f"Request {found.id[:8]}", r=found, private=False)


@routes.post("/requests/{id}/status")
async def requester_page(request: web.Request) -> web.Response:
    """The requester's status page: the request with the full texts of its log (form post of
    the status token, which so stays out of URLs and logs)."""
    try:
        form = await request.post()
    except ValueError:  # not UTF-8, a broken multipart body
        raise BadRequest("The form could not be read.") from None
    token = form.get("status_token")
    if not isinstance(token, str) or not token:
        raise ValidationFailed("Give the request's status token.", field="status_token")
    request_id = request.match_info["id"]
    await request.app[INTEROP_REQUESTS].authorize(request_id, token)
    found = await request.app[REQUEST_TRACKER].requester_view(request_id)
    if wants_json(request):
        return json_response(found, headers={"Cache-Control": "no-store"})
    response = page("request.html", title=f"Request {found.id[:8]}", r=found, private=True)
    response.headers["Cache-Control"] = "no-store"
    return response
