"""Fixtures of the platform tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway.store import Store, open_store


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    """An open, migrated Store on each backend in turn (see tests.conftest.store_url)."""
    opened = await open_store(store_url, pool_size=2)
    yield opened
    await opened.close()
