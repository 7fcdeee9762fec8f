"""Every /v1/ route declares who may call it (requires_scope or public)."""

from __future__ import annotations

from typing import Any

from gateway.app import create_app
from gateway.http.auth import declared_access


def test_every_v1_route_declares_its_access(config: Any) -> None:
    app = create_app(config)
    undeclared = sorted(
        f"{route.method} {route.resource.canonical}"
        for route in app.router.routes()
        if route.resource is not None
        and route.resource.canonical.startswith("/v1/")
        and route.method != "HEAD"
        and declared_access(route.handler) is None
    )
    assert undeclared == []
