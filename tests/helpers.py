"""Helpers the tests import (fixtures are in conftest.py): where things
are, test-only settings, identities, the TOTP clock, and enrolment through
the HTTP API.

The TOTP clock: the service accepts each TOTP time step once, so a test that
needs a second code would otherwise wait for the next step. Every in-process
server and every test client run their TOTP on `TOTP_CLOCK`, which jumps to
the next step instead of sleeping. It only moves forward, and only TOTP
reads it: certificates, tokens and TTLs keep the real time.
"""

from __future__ import annotations

import itertools
import os
import socket
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from cloudsign.ca import check_digit
from device_client.client import CloudsignClient, TotpDevice
from tests.face_images import live_burst, photo

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


class SteppingClock:
    """Real time plus an offset that only grows: `wait_until` jumps instead
    of sleeping. Callable (an aware UTC datetime) for the service's
    `TOTP_CLOCK`, `time()`/`wait_until()` for `device_client.StepClock`."""

    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()

    def time(self) -> float:
        with self._lock:
            return time.time() + self._offset

    async def wait_until(self, moment: float) -> None:
        with self._lock:
            gap = moment - (time.time() + self._offset)
            if gap > 0:
                self._offset += gap

    def __call__(self) -> datetime:
        return datetime.fromtimestamp(self.time(), UTC)


TOTP_CLOCK = SteppingClock()


async def pg_create(name: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def pg_drop(name: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


def new_client(base_url: str, http: aiohttp.ClientSession) -> CloudsignClient:
    """A device client whose authenticator runs on the tests' TOTP clock."""
    return CloudsignClient(base_url, http, clock=TOTP_CLOCK)


def totp_device(secret: str, interval: int = 2) -> TotpDevice:
    """An authenticator for a seed the test read itself (e.g. from a page)."""
    import pyotp

    return TotpDevice(pyotp.TOTP(secret, interval=interval), TOTP_CLOCK)


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
