"""Shared fixtures: a test configuration on a temporary data dir and a real HTTP client."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.config import Config, load_config

ADMIN_TOKEN = "test-admin-token-0123456789"
REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def make_config(data_dir: Path, **overrides: Any) -> Config:
    """A Config on `data_dir` with a fixed admin token; `overrides` replace top-level fields."""
    config = load_config(
        env={"GATEWAY_DATA_DIR": str(data_dir), "GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN}
    )
    return msgspec.structs.replace(config, **overrides) if overrides else config


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path / "data")


ClientFactory = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]


@pytest.fixture
async def client(aiohttp_client: ClientFactory, config: Config) -> TestClient[Any, Any]:
    return await aiohttp_client(create_app(config))


def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def assert_problem(
    response_status: int, content_type: str, body: dict[str, Any], status: int, type_: str
) -> None:
    """A problem+json body of the expected status and type, with the mandatory members."""
    assert response_status == status
    assert content_type == "application/problem+json"
    assert body["status"] == status
    assert body["type"] == type_
    assert body["title"]
    assert body["detail"]
