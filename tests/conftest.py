"""Shared fixtures: a test configuration on a temporary data dir and a real HTTP client.

Storage backends: `store_url` and `backend_config` are parametrized over SQLite and PostgreSQL,
so a test that takes either runs once per backend (ids `[sqlite]`, `[postgres]`). PostgreSQL is
GATEWAY_TEST_POSTGRES_URL when set, else a throwaway server started from local binaries
(pytest-postgresql), else the `[postgres]` runs are skipped with the reason.
"""

from __future__ import annotations

import glob
import os
import shutil
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.config import Config, load_config
from tests.egress_helpers import with_test_hosts

try:
    import psycopg
    from pytest_postgresql import factories
except ImportError:  # the test extra is not installed: PostgreSQL runs skip
    psycopg = None
    factories = None

ADMIN_TOKEN = "test-admin-token-0123456789"
REPO = Path(__file__).resolve().parents[1]


def make_config(data_dir: Path, **overrides: Any) -> Config:
    """A Config on `data_dir` with a fixed admin token; `overrides` replace top-level fields."""
    config = load_config(
        env={
            "GATEWAY_DATA_DIR": str(data_dir),
            "GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN,
            # The tests' webhook servers listen on loopback.
            "GATEWAY_WEBHOOKS__ALLOW_LOOPBACK": "true",
        }
    )
    return msgspec.structs.replace(config, **overrides) if overrides else config


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path / "data")


ClientFactory = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]


@pytest.fixture
async def client(config: Config, aiohttp_client: ClientFactory) -> TestClient[Any, Any]:
    return await aiohttp_client(with_test_hosts(create_app(config)))


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


# -- storage backends ---------------------------------------------------------------------

BACKENDS = ["sqlite", "postgres"]


def _local_pg_ctl() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return found[-1] if found else shutil.which("pg_ctl")


PG_CTL = _local_pg_ctl()
if factories is not None:
    # Started only when requested (no GATEWAY_TEST_POSTGRES_URL); any free port.
    throwaway_postgresql = factories.postgresql_proc(executable=PG_CTL, port=None)


def _why_no_local_server() -> str | None:
    if factories is None or psycopg is None:
        return "pytest-postgresql is not installed"
    if PG_CTL is None:
        return "no pg_ctl under /usr/lib/postgresql/*/bin or on PATH"
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return "initdb refuses to run as root"
    return None


@pytest.fixture(scope="session")
def postgres_server_url(request: pytest.FixtureRequest) -> str:
    """A PostgreSQL server for the session: its URL (any database on it is usable)."""
    url = os.environ.get("GATEWAY_TEST_POSTGRES_URL")
    if url:
        return url
    reason = _why_no_local_server()
    if reason is not None:
        pytest.skip(f"PostgreSQL tests skipped: GATEWAY_TEST_POSTGRES_URL unset and {reason}")
    proc = request.getfixturevalue("throwaway_postgresql")
    password = f":{proc.password}" if proc.password else ""
    return f"postgresql://{proc.user}{password}@{proc.host}:{proc.port}/postgres"


def _with_search_path(url: str, schema: str) -> str:
    # asyncpg passes unknown URL query parameters on as server settings.
    return f"{url}{'&' if urlsplit(url).query else '?'}search_path={schema}"


@pytest.fixture
def postgres_url(postgres_server_url: str) -> Iterator[str]:
    """A URL on an empty schema of its own (search_path), dropped after the test."""
    if psycopg is None:
        pytest.skip("PostgreSQL tests skipped: psycopg is not installed")
    schema = f"test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(postgres_server_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield _with_search_path(postgres_server_url, schema)
    finally:
        with psycopg.connect(postgres_server_url, autocommit=True) as conn:
            # A test that left a transaction open fails here instead of hanging the run.
            conn.execute("SET lock_timeout = '20s'")
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of each backend in turn: `sqlite:///...` or `postgresql://...`."""
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        return url
    return f"sqlite:///{tmp_path / 'db' / 'gateway.db'}"


@pytest.fixture
def backend_config(tmp_path: Path, store_url: str) -> Config:
    """The test Config with its database on each backend in turn (see `store_url`)."""
    config = make_config(tmp_path / "data")
    storage = msgspec.structs.replace(config.storage, database_url=store_url, pool_size=4)
    return msgspec.structs.replace(config, storage=storage)


@pytest.fixture
async def backend_client(
    backend_config: Config, aiohttp_client: ClientFactory
) -> TestClient[Any, Any]:
    """`client`, once per storage backend.

    `backend_config` comes first so that its database outlives the app: the app closes (and
    ends its transactions) before the schema is dropped, or the drop would wait on its locks.
    """
    return await aiohttp_client(with_test_hosts(create_app(backend_config)))


@pytest.fixture
async def onboarded(client: TestClient[Any, Any]) -> Any:
    """A provider approved through the API, with a working access token (all scopes)."""
    from tests.onboarding_helpers import onboard

    return await onboard(client)
