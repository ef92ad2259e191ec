"""The rate limits at their shipped defaults, on a server of their own
(the shared test server raises the per-address ones: one test process is
one address). Each client here comes from its own loopback address, so the
per-address counters of one test do not touch another's."""

from __future__ import annotations

import base64
import itertools
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cloudsign.app import create_app
from cloudsign.appkeys import TOTP_CLOCK
from cloudsign.guard import Limits
from cloudsign.settings import Settings, load_settings
from tests.helpers import FAST_SETTINGS, enrolled, free_port, make_iin, new_client
from tests.helpers import TOTP_CLOCK as TEST_TOTP_CLOCK
from tests.staff import bootstrap_staff

DEFAULT_GUARD = {
    k: v for k, v in FAST_SETTINGS.items() if not k.startswith("max_") or k == "max_failed_attempts"
}
_addresses = (f"127.0.0.{n}" for n in itertools.count(20))


@pytest.fixture(scope="module")
async def strict(
    base_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    db = tmp_path_factory.mktemp("strict") / "strict.db"
    settings = load_settings(
        env={},
        data_dir=base_settings.data_dir,
        port=free_port(),
        database_url=f"sqlite:///{db}",
        **DEFAULT_GUARD,
    )
    app = create_app(settings)
    app[TOTP_CLOCK] = TEST_TOTP_CLOCK
    server = TestServer(app, host="127.0.0.1", port=settings.port)
    await server.start_server()
    base_url = str(server.make_url("")).rstrip("/")
    async with aiohttp.ClientSession() as http:
        await bootstrap_staff(app, http, base_url)
        yield base_url
    await server.close()


@pytest.fixture
async def http_from() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session whose connections come from a fresh loopback address."""
    connector = aiohttp.TCPConnector(local_addr=(next(_addresses), 0))
    async with aiohttp.ClientSession(connector=connector) as session:
        yield session


def test_the_defaults() -> None:
    """What README's "Rate limits" table says; the shared server changes only
    the per-address and per-hour counts."""
    limits = load_settings(env={}).guard
    assert (limits.max_failed_attempts, limits.lockout.total_seconds()) == (5, 900)
    assert limits.max_failed_per_address == 30
    assert limits.max_face_challenges_per_hour == 30
    assert limits.max_transport_keys_per_hour == 60
    assert limits.max_enrolments_per_address_per_hour == 20
    derived = Limits.from_settings(limits)
    assert derived.otp.max_count == derived.login.max_count == derived.password.max_count == 5
    assert derived.otp.lock == derived.password.lock == limits.lockout


def _point() -> bytes:
    return (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )


async def _post(http: aiohttp.ClientSession, url: str, body: Any) -> tuple[int, Any, Any]:
    async with http.post(url, json=body) as resp:
        return resp.status, resp.headers, await resp.json(content_type=None)


async def test_failures_from_one_address_are_limited(
    strict: str, http_from: aiohttp.ClientSession
) -> None:
    """Thirty failed logins from one address, each for another IIN (so no
    per-IIN lock helps), and the address is refused: 429 with Retry-After."""
    body = {
        "otp": "123456",
        "password_key": {  # well formed, for no key of ours
            "transport_key_id": str(uuid.uuid4()),
            "device_public_key": base64.b64encode(_point()).decode(),
            "wrapped_key": base64.b64encode(os.urandom(40)).decode(),
        },
    }
    statuses = []
    for _ in range(31):
        status, headers, _ = await _post(
            http_from, f"{strict}/api/v1/sessions", {**body, "iin": make_iin()}
        )
        statuses.append(status)
    assert set(statuses[:30]) == {401}
    assert statuses[30] == 429 and int(headers["Retry-After"]) > 0


async def test_login_challenges_per_address_are_limited(
    strict: str, http_from: aiohttp.ClientSession
) -> None:
    """Each challenge makes an HSM key: sixty an hour from one address."""
    for _ in range(60):
        status, _, body = await _post(
            http_from, f"{strict}/api/v1/sessions/challenge", {"iin": make_iin()}
        )
        assert status == 201, body
    status, headers, _ = await _post(
        http_from, f"{strict}/api/v1/sessions/challenge", {"iin": make_iin()}
    )
    assert status == 429 and int(headers["Retry-After"]) > 0


async def test_transport_keys_and_face_challenges_per_account_are_limited(
    strict: str, http_from: aiohttp.ClientSession
) -> None:
    client = new_client(strict, http_from)
    await enrolled(client)
    # enrolled() took one transport key and one face challenge.
    assert await _until_refused(client, "/api/v1/me/transport-keys", {"purpose": "authorize"}) == 59
    assert await _until_refused(client, "/api/v1/me/face-challenges", None) == 29


async def _until_refused(client: Any, path: str, body: Any) -> int:
    """How many requests pass before the first 429 (which must come)."""
    for n in itertools.count():
        status, headers, answer = await _post_auth(client, path, body)
        if status == 429:
            assert int(headers["Retry-After"]) > 0
            return n
        assert status == 201, answer
        assert n < 1000
    raise AssertionError("unreachable")


async def _post_auth(client: Any, path: str, body: Any) -> tuple[int, Any, Any]:
    async with client.session.post(
        client.base_url + path,
        json=body,
        headers={"Authorization": f"Bearer {client.access_token}"},
    ) as resp:
        return resp.status, resp.headers, await resp.json(content_type=None)
