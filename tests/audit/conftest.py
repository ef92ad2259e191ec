"""Fixtures for the audit log service tests: a fresh database per test (both
backends), a controllable clock, a real anvil, and audit-only apps over HTTP.

The HSM is the session's token (SoftHSM2 reads its config once per process),
so every app here shares `base_settings.data_dir`.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from audit_chain import AnvilProcess, find_anvil
from cloudsign import app as app_module
from cloudsign.app import create_app
from cloudsign.appkeys import CLOCK, METRICS, READINESS, SETTINGS, TOTP_CLOCK
from cloudsign.audit import api as audit_api
from cloudsign.settings import Settings, load_settings
from cloudsign.web.metrics import Metrics
from cloudsign.web.problems import problem_middleware
from tests.helpers import FAST_SETTINGS, PG_ADMIN_DSN, free_port, pg_create, pg_drop
from tests.helpers import TOTP_CLOCK as TEST_TOTP_CLOCK

#: 2026-03-01 10:00 in UTC+5.
START = datetime(2026, 3, 1, 5, 0, tzinfo=UTC)


@dataclass
class FakeClock:
    now: datetime = START
    calls: int = field(default=0)

    def __call__(self) -> datetime:
        self.calls += 1
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def audit_db(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, empty database of the session's backend."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'audit.db'}"
        return
    name = f"cloudsign_audit_{secrets.token_hex(4)}"
    try:
        await pg_create(name)
    except OSError as e:  # pragma: no cover - the session fixture decides first
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required in CI and is not reachable: {e}")
        pytest.skip(f"PostgreSQL not reachable: {e}")
    yield f"{PG_ADMIN_DSN.rsplit('/', 1)[0]}/{name}"
    await pg_drop(name)


@pytest.fixture(scope="session")
def anvil_binary() -> Path:
    return find_anvil()


@pytest.fixture
def anvil(tmp_path: Path, anvil_binary: Path) -> Iterator[AnvilProcess]:
    node = AnvilProcess(
        tmp_path / "chain" / "state.json",
        binary=anvil_binary,
        log_path=tmp_path / "anvil.log",
        state_interval=1,
    )
    node.start()
    try:
        yield node
    finally:
        node.kill()


def audit_settings(base: Settings, database_url: str, rpc_url: str, **over: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": base.data_dir,
        "port": free_port(),
        "database_url": database_url,
        "chain_rpc_url": rpc_url,
        "audit_background_tasks": False,
        "status_background_tasks": False,  # no status services in the audit-only app
        "chain_poll_interval_ms": 100,
        "audit_sequence_interval_ms": 50,
        "audit_origin": "cloudsign.test/audit-log",
        # The tests' anvil has a development chain id, accepted only here.
        "development": True,
        **FAST_SETTINGS,
    }
    values.update(over)
    return load_settings(env={}, **values)


def audit_only_app(settings: Settings, clock: Callable[[], datetime]) -> web.Application:
    """Storage, HSM and the audit log only (no face pool, no other API)."""
    app = web.Application(middlewares=[problem_middleware])
    app[SETTINGS] = settings
    app[CLOCK] = clock
    app[METRICS] = Metrics()
    app[READINESS] = {}
    app.cleanup_ctx.extend(
        [
            app_module._database,
            app_module._hsm,
            app_module._http_client,
            app_module._audit,
            app_module._background,
        ]
    )
    app.add_routes(audit_api.routes)
    return app


AppFactory = Callable[..., Any]


@pytest.fixture
async def audit_server(
    base_settings: Settings, audit_db: str, anvil: AnvilProcess, clock: FakeClock
) -> AsyncIterator[AppFactory]:
    """Start audit-only servers on the test's database and anvil: `await start(**over)`."""
    servers: list[TestServer] = []

    async def start(*, full: bool = False, **over: Any) -> TestServer:
        settings = audit_settings(base_settings, audit_db, anvil.rpc_url, **over)
        if full:
            app = create_app(settings)
            app[CLOCK] = clock
            app[TOTP_CLOCK] = TEST_TOTP_CLOCK
        else:
            app = audit_only_app(settings, clock)
        server = TestServer(app, host="127.0.0.1", port=settings.port)
        await server.start_server()
        servers.append(server)
        return server

    yield start
    for server in reversed(servers):
        await server.close()


@asynccontextmanager
async def running(server: TestServer) -> AsyncIterator[TestServer]:
    try:
        yield server
    finally:
        await server.close()


async def wait_for(predicate: Callable[[], Any], within: float = 20.0) -> Any:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        value = await predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)
