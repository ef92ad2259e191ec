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

import asyncio
import hashlib
import itertools
import os
import socket
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from cloudsign.ca import check_digit
from device_client.client import CloudsignClient, TotpDevice
from tests.clocks import TOTP_CLOCK, SteppingClock
from tests.face_images import live_burst
from tests.staff import DESKS

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
    # The operator listener on any free port (app[OPERATOR_URL] says which).
    "operator_port": 0,
    # One test process is one client address: the per-address limits are
    # raised here and tested at their defaults in tests/guard.
    "max_failed_per_address": 100_000,
    "max_enrolments_per_address_per_hour": 100_000,
    "max_signing_requests_per_hour": 100_000,
    "max_transport_keys_per_hour": 100_000,
    "max_face_challenges_per_hour": 10_000,
    # The route fuzz alone sends the public validation route thousands of
    # bodies from this one address (tests/validation tests the limit itself).
    "max_validations_per_address_per_hour": 100_000,
    # Web Push goes to the tests' own push endpoint on loopback (tests/mobile).
    "push_allow_loopback": True,
    # eGov QR signing reaches the tests' own e-government service on loopback.
    "egov_allow_loopback": True,
    # Any free port for the embedded anvil: two runs on one machine never collide.
    "chain_anvil_port": 0,
    # The validation workers spawn at the first validation, not with every
    # test server (tests/validation uses them; most tests never do).
    "validation_prestart": False,
}


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


async def activated(
    client: CloudsignClient,
    identity: dict[str, str] | None = None,
    face: str = "obama_1.jpg",
) -> dict[str, Any]:
    """Proofed at the server's registration desk (a live capture of `face`)
    and the activation code redeemed: an enrolment session."""
    proofing = await DESKS[client.base_url].proof(identity or person(), face)
    return await client.activate(proofing["activation_code"])


async def enrolled(
    client: CloudsignClient,
    password: str = "correct horse battery",
    algorithm: str = "ec-p256",
    identity: dict[str, str] | None = None,
    face: str = "obama_1.jpg",
    check_face: str = "obama_2.jpg",
) -> tuple[TotpDevice, dict[str, Any]]:
    """Proofing at the desk, then on the device: activation, consents, TOTP,
    a face check and the credential, all through the HTTP APIs."""
    await activated(client, identity, face)
    await client.accept_consents()
    totp = await client.setup_totp()
    face_id = await passed_face_check(client, check_face)
    cred = await client.create_credential(password, await totp.fresh_code(), face_id, algorithm)
    return totp, cred


async def authorize_documents(
    client: CloudsignClient,
    totp: Any,
    cred: dict[str, Any],
    documents: list[bytes],
    *,
    password: str = "correct horse battery",
) -> str:
    """A SAD for the SHA-256 of each document: the face check first (the
    TOTP code must still be fresh after it), then the code and the password."""
    face = await passed_face_check(client)
    return await client.authorize(
        cred["credential_id"],
        [hashlib.sha256(d).digest() for d in documents],
        password=password,
        otp=await totp.fresh_code(),
        face_challenge_id=face,
    )


async def passed_face_check(client: CloudsignClient, face: str = "obama_2.jpg") -> str:
    """A face check passed just now; returns its id for one authorisation."""
    challenge = await client.face_challenge()
    verdict = await client.send_burst(
        challenge["challenge_id"], live_burst(face, challenge["actions"])
    )
    assert verdict["passed"], verdict
    return str(challenge["challenge_id"])


__all__ = ["TOTP_CLOCK", "SteppingClock"]


#: How long openssl may take.
TOOL_TIMEOUT_SECONDS = 60.0


async def openssl_cms_verify(
    p7s: bytes, content: bytes, root_pem: str, tmp: Path
) -> tuple[int, str]:
    """`openssl cms -verify` of the detached signature over `content`,
    with this CA's root as the only certificate it is given."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "content").write_bytes(content)
    (tmp / "signature.p7s").write_bytes(p7s)
    (tmp / "root.pem").write_text(root_pem)
    proc = await asyncio.create_subprocess_exec(
        "openssl",
        "cms",
        "-verify",
        "-binary",
        "-inform",
        "DER",
        "-in",
        str(tmp / "signature.p7s"),
        "-content",
        str(tmp / "content"),
        "-CAfile",
        str(tmp / "root.pem"),
        "-out",
        "/dev/null",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), TOOL_TIMEOUT_SECONDS)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")
