"""Fixtures of the HTTP tests."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.app import create_app
from gateway.config import Config
from tests.http.providers import test_principal_middleware


@pytest.fixture
async def pclient(aiohttp_client: Any, config: Config) -> Any:
    """A test client whose requests may act as a provider (see provider_headers)."""
    app = create_app(config)
    # Outermost, so every middleware sees the request with its real access token.
    app.middlewares.insert(0, test_principal_middleware)
    return await aiohttp_client(app)
