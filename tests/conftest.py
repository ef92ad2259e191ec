"""Shared fixtures: one SoftHSM2 token and CA per test session (SoftHSM2 reads
its config once per process), a database per backend, and a real HTTP
server per backend.

Every service-level test runs on SQLite and on PostgreSQL. PostgreSQL is
at 127.0.0.1:5432; with CI=true an unreachable server fails the run.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from cloudsign.app import create_app
from cloudsign.ca.identity import check_digit
from cloudsign.instance import initialise
from cloudsign.settings import Settings, load_settings
from mobile_api.client import CloudsignClient, TotpDevice
from tests.faces import live_burst, photo

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
PG_ADMIN_DSN = os.environ.get("CLOUDSIGN_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
BACKENDS = ("sqlite", "postgresql")

#: Test-only settings: Argon2id at 8 MiB / 1 pass and 2-second TOTP steps
#: keep the suite fast; the defaults (64 MiB / 3 passes, 30 s) are tested in
#: test_settings.
FAST_SETTINGS: dict[str, Any] = {
    "argon2_time_cost": 1,
    "argon2_memory_kib": 8192,
    "totp_period_seconds": 2,
    # A still photo can be made to blink, not to turn its head (tests/faces.py).
    "liveness_actions": "blink",
    "liveness_action_count": 1,
    # Bearer token of the operator API (cloudsign/status); a Secret once loaded.
    "operator_token": "test-operator-token-0123456789",
    "auditor_token": "test-auditor-token-0123456789",
    # Any free port for the embedded anvil: two runs on one machine never collide.
    "chain_anvil_port": 0,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cloudsign-data")


@pytest.fixture(scope="session")
def base_settings(data_dir: Path) -> Settings:
    settings = load_settings(env={}, data_dir=data_dir, port=free_port(), **FAST_SETTINGS)
    asyncio.run(initialise(settings))
    return settings


async def _pg_create(name: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def _pg_drop(name: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped afterwards."""
    name = f"cloudsign_test_{secrets.token_hex(4)}"
    try:
        asyncio.run(_pg_create(name))
    except (OSError, asyncpg.PostgresError, TimeoutError) as e:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required in CI and is not reachable: {e}")
        pytest.skip(f"PostgreSQL not reachable: {e}")
    base = PG_ADMIN_DSN.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    asyncio.run(_pg_drop(name))


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
    app = create_app(settings)
    srv = TestServer(app, host="127.0.0.1", port=settings.port)
    await srv.start_server()
    yield srv
    await srv.close()


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


_iin_counter = itertools.count(1)
# Serial numbers, not random ones: a few hundred random 4-digit serials in
# one database collide (the birthday problem) and the account is refused.
_iin_serials = itertools.count(1)
_bin_serials = itertools.count(1)


def make_iin() -> str:
    """A fresh, valid IIN, unique in this test run (born 1990-01-01, male,
    20th century, the serial counting up)."""
    while True:
        body = "900101" + "3" + f"{next(_iin_serials) % 10_000:04d}"
        digit = check_digit(body)
        if digit is not None:
            return body + str(digit)


def make_bin() -> str:
    """A fresh, valid BIN, unique in this test run."""
    while True:
        body = "0105" + "4" + f"{next(_bin_serials) % 1_000_000:06d}"
        digit = check_digit(body)
        if digit is not None:
            return body + str(digit)


def person(**over: str) -> dict[str, str]:
    n = next(_iin_counter)
    data = {
        "kind": "person",
        "iin": make_iin(),
        "surname": "Сейтқалиев",
        "given_name": f"Ержан{n}",
        "email": f"citizen{n}@example.kz",
    }
    data.update(over)
    return data


@pytest.fixture
def client(http: aiohttp.ClientSession, base_url: str) -> CloudsignClient:
    return CloudsignClient(base_url, http)


async def enrolled(
    client: CloudsignClient,
    password: str = "correct horse battery",
    algorithm: str = "ec-p256",
    identity: dict[str, str] | None = None,
    face: str = "obama_1.jpg",
) -> tuple[TotpDevice, dict[str, Any]]:
    """Account, consents, TOTP, face and a credential, all through the HTTP API."""
    await client.create_account(identity or person())
    await client.accept_consents()
    totp = await client.setup_totp()
    await client.enrol_face([photo(face)])
    cred = await client.create_credential(password, await totp.fresh_code(), algorithm)
    return totp, cred


async def passed_face_check(client: CloudsignClient, face: str = "obama_2.jpg") -> str:
    """A face check passed just now; returns its id for one authorisation."""
    challenge = await client.face_challenge()
    verdict = await client.send_burst(
        challenge["challenge_id"], live_burst(face, challenge["actions"])
    )
    assert verdict["passed"], verdict
    return str(challenge["challenge_id"])
