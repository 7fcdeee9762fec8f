"""Fixtures of the HTTP tests."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.app import create_app
from gateway.config import Config
from tests.http.providers import act_as_providers


@pytest.fixture
async def pclient(config: Config, aiohttp_client: Any) -> Any:
    """A test client whose requests may act as a provider (see provider_headers)."""
    return await aiohttp_client(act_as_providers(create_app(config)))


@pytest.fixture
async def backend_pclient(backend_config: Config, aiohttp_client: Any) -> Any:
    """`pclient`, once per storage backend (see tests.conftest.store_url)."""
    return await aiohttp_client(act_as_providers(create_app(backend_config)))
