"""Shared fixtures: one SoftHSM2 token and CA per test session (SoftHSM2 reads
its config once per process), a database per backend, and a real HTTP
server per backend. Helpers the tests import are in tests/helpers.py.

Every service-level test runs on SQLite and on PostgreSQL. PostgreSQL is
at 127.0.0.1:5432; with CI=true an unreachable server fails the run.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from cloudsign.app import create_app
from cloudsign.appkeys import TOTP_CLOCK
from cloudsign.instance import initialise
from cloudsign.settings import Settings, load_settings
from device_client.client import CloudsignClient
from tests.helpers import (
    BACKENDS,
    FAST_SETTINGS,
    PG_ADMIN_DSN,
    free_port,
    new_client,
    pg_create,
    pg_drop,
)
from tests.helpers import TOTP_CLOCK as TEST_TOTP_CLOCK
from tests.staff import STAFF, Staff, bootstrap_staff

_BROWSER_TESTS = ("tests/app/", "tests/portal/")
_BACKEND_ID = re.compile(r"\[(" + "|".join(BACKENDS) + r")[\]-]")


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under xdist with `--dist loadgroup` (what `make pytest` runs), every
    test of one backend runs on one worker, so each worker starts that
    backend's server once; tests without a backend are shared out one by
    one. (xdist's own `xdist_group` marker does not reach pytest 9's node
    ids, so the group is read from the backend's parameter id instead.)

    The SQLite browser tests (the portal's and the app's) are a group of
    their own, so they can run beside the PostgreSQL group rather than after
    the rest of SQLite's. A worker that takes them starts its own SQLite
    server in its own data directory; PostgreSQL tests never leave their
    group, since two servers on one PostgreSQL database would clash."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class ByBackend(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            m = _BACKEND_ID.search(nodeid)
            if not m:
                return nodeid
            if m.group(1) == "sqlite" and nodeid.startswith(_BROWSER_TESTS):
                return "sqlite-browser"
            return m.group(1)

    return ByBackend(config, log)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cloudsign-data")


@pytest.fixture(scope="session")
def base_settings(data_dir: Path) -> Settings:
    settings = load_settings(env={}, data_dir=data_dir, port=free_port(), **FAST_SETTINGS)
    asyncio.run(initialise(settings))
    return settings


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped afterwards."""
    name = f"cloudsign_test_{secrets.token_hex(4)}"
    try:
        asyncio.run(pg_create(name))
    except (OSError, asyncpg.PostgresError, TimeoutError) as e:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required in CI and is not reachable: {e}")
        pytest.skip(f"PostgreSQL not reachable: {e}")
    base = PG_ADMIN_DSN.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    asyncio.run(pg_drop(name))


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def database_url(backend: str, request: pytest.FixtureRequest, data_dir: Path) -> str:
    if backend == "postgresql":
        return str(request.getfixturevalue("pg_database"))
    return f"sqlite:///{data_dir / 'test.db'}"


@pytest.fixture(scope="session")
def settings(base_settings: Settings, database_url: str) -> Settings:
    return load_settings(
        env={},
        data_dir=base_settings.data_dir,
        port=base_settings.port,
        database_url=database_url,
        **FAST_SETTINGS,
    )


@pytest.fixture(scope="session")
async def server(settings: Settings) -> AsyncIterator[TestServer]:
    """The service on a real port, with its staff (tests/staff.py) signed in."""
    app = create_app(settings)
    app[TOTP_CLOCK] = TEST_TOTP_CLOCK
    srv = TestServer(app, host="127.0.0.1", port=settings.port)
    await srv.start_server()
    async with aiohttp.ClientSession() as http:
        await bootstrap_staff(app, http, str(srv.make_url("")).rstrip("/"))
        yield srv
    await srv.close()


@pytest.fixture(scope="session")
def staff(server: TestServer) -> Staff:
    return STAFF[str(server.make_url("")).rstrip("/")]


@pytest.fixture(scope="session")
def app(server: TestServer) -> Any:
    return server.app


@pytest.fixture(scope="session")
def base_url(server: TestServer) -> str:
    return str(server.make_url("")).rstrip("/")


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def client(http: aiohttp.ClientSession, base_url: str) -> CloudsignClient:
    return new_client(base_url, http)
