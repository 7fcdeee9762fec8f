"""Pages for people (DESIGN §4.11): the portal, the API reference, problem pages, the tracker."""

from __future__ import annotations

import inspect
import re
from typing import Any

from gateway import errors
from tests.conftest import assert_problem
from tests.onboarding_helpers import decide, new_key, submit_request

_EXTERNAL = re.compile(r"""(?:src|href|action)=["'](?:https?:)?//""", re.IGNORECASE)
_LINK = re.compile(r"""(?:src|href)=["'](/[^"'#]*)""")


async def _html(client: Any, path: str) -> str:
    response = await client.get(path, headers={"Accept": "text/html"})
    assert response.status == 200, path
    assert response.content_type == "text/html"
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    text = await response.text()
    assert not _EXTERNAL.search(text), f"{path} loads something from elsewhere"
    assert '<html lang="en">' in text
    assert '<meta name="viewport"' in text
    return text


async def test_the_portal_shows_the_offer_and_how_to_request_access(client: Any) -> None:
    text = await _html(client, "/")
    assert "<h1>Messaging interoperability gateway</h1>" in text
    for label in ("WhatsApp", "Messenger", "Instagram Direct"):
        assert label in text
    # A planned functionality with its date, an available one without.
    assert re.search(r"voice_calls</th>\s*<td><span class=\"state state-planned\">planned", text)
    assert '<time datetime="2028-03-01">' in text
    assert re.search(r"group_text</th>\s*<td><span class=\"state state-available\">", text)
    assert "/v1/interop-requests" in text
    assert "20 working days" in text
    assert 'href="/problems/validation"' in text


async def test_every_link_of_the_pages_resolves(client: Any) -> None:
    _, jwk = new_key("ed25519", kid="k1")
    created = await submit_request(client, [jwk])
    pages = ["/", "/docs", "/requests", f"/requests/{created['id']}", "/problems/conflict"]
    seen: set[str] = set()
    for path in pages:
        for link in _LINK.findall(await _html(client, path)):
            if link in seen:
                continue
            seen.add(link)
            response = await client.get(link)
            assert response.status == 200, f"{path} links to {link}: {response.status}"
    assert {"/assets/portal.css", "/assets/swagger-ui-bundle.js", "/openapi.json"} <= seen


async def test_json_is_there_for_clients_that_ask(client: Any) -> None:
    response = await client.get("/", headers={"Accept": "application/json"})
    assert response.content_type == "application/json"
    body = await response.json()
    whatsapp = next(s for s in body["services"] if s["name"] == "whatsapp")
    voice = next(f for f in whatsapp["functionalities"] if f["name"] == "voice_calls")
    assert voice == {"name": "voice_calls", "state": "planned", "planned_for": "2028-03-01"}
    assert body["links"]["docs"] == "/docs"
    response = await client.get(
        "/docs", headers={"Accept": "application/json"}, allow_redirects=False
    )
    assert response.status == 302
    assert response.headers["Location"] == "/openapi.json"


async def test_the_api_reference_is_rendered_from_the_document_by_a_shipped_renderer(
    client: Any,
) -> None:
    text = await _html(client, "/docs")
    assert 'data-url="/openapi.json"' in text
    assert '<script src="/assets/swagger-ui-bundle.js"></script>' in text
    # Without JavaScript, the operations are listed all the same.
    assert "<code>POST /v1/interop-requests</code>" in text
    response = await client.get("/assets/swagger-ui-bundle.js")
    assert response.content_type == "text/javascript"
    assert b"SwaggerUIBundle" in await response.read()
    init = await (await client.get("/assets/docs-init.js")).text()
    assert "validatorUrl: null" in init  # no badge fetched from elsewhere
    response = await client.get("/assets/../../etc/passwd")
    assert response.status == 404


def _problem_types() -> set[str]:
    return {
        cls.type
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.GatewayError) and cls.type.startswith("/problems/")
    }


async def test_every_problem_type_has_its_page(client: Any) -> None:
    types = _problem_types()
    assert "/problems/validation" in types and "/problems/oauth" in types
    for type_ in sorted(types):
        text = await _html(client, type_)
        assert f"<code>{type_}</code>" in text
    response = await client.get("/problems/rate-limited", headers={"Accept": "application/json"})
    body = await response.json()
    assert body["type"] == "/problems/rate-limited"
    assert body["status"] == 429
    assert "Retry-After" in body["description"]


async def test_an_unknown_page_is_a_problem(client: Any) -> None:
    for path in ("/problems/telepathy", "/requests/nope", "/assets/nope.js"):
        response = await client.get(path)
        assert_problem(
            response.status,
            response.content_type,
            await response.json(content_type=None),
            404,
            "/problems/not-found",
        )


async def test_the_tracker_lists_requests_without_personal_data(client: Any) -> None:
    _, jwk = new_key("ed25519", kid="k1")
    first = await submit_request(client, [jwk], organisation="First Messenger")
    second = await submit_request(client, [jwk], organisation="Second Chat")
    await decide(client, second["id"], "reject", reason="Mail jane.doe@example.org for details")
    text = await _html(client, "/requests")
    assert "First Messenger" in text and "Second Chat" in text
    assert text.index("Second Chat") < text.index("First Messenger")  # newest first
    assert "interop@example.org" not in text
    page = await _html(client, f"/requests/{second['id']}")
    assert "rejected" in page
    assert "jane.doe" not in page  # reasons are for the requester, not the public
    body = await (await client.get("/requests", headers={"Accept": "application/json"})).json()
    ids = [item["id"] for item in body["items"]]
    assert ids == [second["id"], first["id"]]
    assert "contact_email" not in str(body) and "jane.doe" not in str(body)
