"""Fixtures for identity proofing: the test registry (tests/registry_server.py)
and a second service configured with it, on its own fresh database of the
session's backend (the session's server has no registry: remote proofing
is off there). Both share the session's HSM token and data directory.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from cloudsign.app import create_app
from cloudsign.appkeys import TOTP_CLOCK
from cloudsign.clock import Clock
from cloudsign.settings import Settings, load_settings
from device_client.client import CloudsignClient
from tests.helpers import FAST_SETTINGS, PG_ADMIN_DSN, free_port, new_client, pg_create, pg_drop
from tests.helpers import TOTP_CLOCK as TEST_TOTP_CLOCK
from tests.registry_server import RegistryServer


@pytest.fixture(scope="session")
async def registry_service() -> AsyncIterator[RegistryServer]:
    registry = RegistryServer()
    await registry.start()
    yield registry
    await registry.close()


@pytest.fixture
def registry(registry_service: RegistryServer) -> Iterator[RegistryServer]:
    """The test registry, honest again after each test."""
    yield registry_service
    registry_service.reset()


@pytest.fixture(scope="session")
async def remote_database(
    backend: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('remote') / 'remote.db'}"
        return
    request.getfixturevalue("pg_database")  # skips (or fails in CI) without PostgreSQL
    name = f"cloudsign_remote_{secrets.token_hex(4)}"
    await pg_create(name)
    yield f"{PG_ADMIN_DSN.rsplit('/', 1)[0]}/{name}"
    await pg_drop(name)


@pytest.fixture(scope="session")
async def remote_server(
    base_settings: Settings, remote_database: str, registry_service: RegistryServer
) -> AsyncIterator[TestServer]:
    """The service with remote proofing against the test registry."""
    settings = load_settings(
        env={},
        data_dir=base_settings.data_dir,
        port=free_port(),
        database_url=remote_database,
        **FAST_SETTINGS,
        registry_url=registry_service.url,
        registry_public_key=registry_service.public_key,
        face_workers=1,
        audit_background_tasks=False,
        status_background_tasks=False,
    )
    app = create_app(settings)
    totp_clock: Clock = TEST_TOTP_CLOCK
    app[TOTP_CLOCK] = totp_clock
    server = TestServer(app, host="127.0.0.1", port=settings.port)
    await server.start_server()
    yield server
    await server.close()


@pytest.fixture
def remote_app(remote_server: TestServer) -> Any:
    return remote_server.app


@pytest.fixture
def remote_url(remote_server: TestServer) -> str:
    return str(remote_server.make_url("")).rstrip("/")


@pytest.fixture
def remote_client(http: aiohttp.ClientSession, remote_url: str) -> CloudsignClient:
    return new_client(remote_url, http)
