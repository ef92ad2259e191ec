"""The centre's staff, for tests: operators who sign in over the operator
listener with their own password and TOTP, and a registration desk that
proofs citizens the way a real desk does (a live burst, then approval).

Each in-process server gets its staff from `bootstrap_staff`: two security
officers from the server-side bootstrap (as `cloudsign operator
create-security-officer` makes them), then a registration officer, a
revocation officer and an auditor created by a security officer over HTTP
and set up with their setup codes. `enrolled()` (tests/helpers.py) finds the
desk of a server by its base URL in `DESKS`.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pyotp
from aiohttp import web

from cloudsign.appkeys import OPERATOR_URL, OPERATORS
from device_client.client import ApiError, TotpDevice
from tests.clocks import TOTP_CLOCK
from tests.face_images import live_burst

#: The registration desk of each in-process server, by its public base URL.
DESKS: dict[str, OperatorClient] = {}
#: All staff of each in-process server, by its public base URL.
STAFF: dict[str, Staff] = {}


def _device(uri: str) -> TotpDevice:
    totp = pyotp.parse_uri(uri)
    assert isinstance(totp, pyotp.TOTP)
    return TotpDevice(totp, TOTP_CLOCK)


@dataclass
class OperatorClient:
    """One operator, signed in over the operator listener (Bearer)."""

    url: str
    http: aiohttp.ClientSession
    username: str
    password: str = field(repr=False)
    totp: TotpDevice = field(repr=False)
    token: str | None = field(default=None, repr=False)

    async def request(self, method: str, path: str, json: Any = None, *, data: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        async with self.http.request(
            method, self.url + path, json=json, data=data, headers=headers
        ) as resp:
            body = await resp.json(content_type=None)
            if resp.status >= 400:
                raise ApiError(resp.status, body)
            return body

    async def request_status(self, method: str, path: str, json: Any = None) -> tuple[int, Any]:
        """The status and body, errors included (for two-person answers)."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        async with self.http.request(method, self.url + path, json=json, headers=headers) as resp:
            return resp.status, await resp.json(content_type=None)

    async def sign_in(self) -> OperatorClient:
        body = await self.request(
            "POST",
            "/operator/api/v1/sessions",
            {
                "username": self.username,
                "password": self.password,
                "otp": await self.totp.fresh_code(),
            },
        )
        self.token = body["access_token"]
        return self

    # -- a security officer's work ------------------------------------------------

    async def new_operator(self, roles: list[str], username: str | None = None) -> OperatorClient:
        """Create an operator and set them up as they would (setup code,
        password, first TOTP code), signed in."""
        name = username or f"{roles[0].split('_')[0]}.{secrets.token_hex(3)}"
        created = await self.request(
            "POST",
            "/operator/api/v1/operators",
            {"username": name, "display_name": name.title(), "roles": roles},
        )
        return await set_up(self.url, self.http, name, created["setup_code"])

    # -- the registration desk ------------------------------------------------------

    async def capture_face(self, face: str) -> str:
        """The citizen's live face at the desk; returns the capture id."""
        capture = await self.request("POST", "/operator/api/v1/desk/captures")
        form = aiohttp.FormData()
        for i, frame in enumerate(live_burst(face, capture["actions"])):
            form.add_field("frame", frame, filename=f"f{i}.jpg", content_type="image/jpeg")
        await self.request(
            "POST", f"/operator/api/v1/desk/captures/{capture['capture_id']}/burst", data=form
        )
        return str(capture["capture_id"])

    async def proof(self, identity: dict[str, str], face: str = "obama_1.jpg") -> dict[str, Any]:
        """Proof `identity` at the desk: the answer carries the activation code."""
        capture_id = await self.capture_face(face)
        result: dict[str, Any] = await self.request(
            "POST",
            "/operator/api/v1/proofings",
            {
                "identity": identity,
                "document": {"type": "id_card", "number": f"N{secrets.randbelow(10**8):08d}"},
                "capture_id": capture_id,
            },
        )
        return result


async def set_up(
    url: str, http: aiohttp.ClientSession, username: str, setup_code: str
) -> OperatorClient:
    """What a new operator does with their setup code; returns them signed in."""
    password = "operator " + secrets.token_urlsafe(12)
    async with http.post(
        url + "/operator/api/v1/setup", json={"setup_code": setup_code, "password": password}
    ) as resp:
        body = await resp.json()
        assert resp.status == 201, body
    device = _device(body["provisioning_uri"])
    async with http.post(
        url + "/operator/api/v1/setup/confirm",
        json={"setup_code": setup_code, "otp": await device.fresh_code()},
    ) as resp:
        assert resp.status == 200, await resp.text()
    return await OperatorClient(url, http, username, password, device).sign_in()


@dataclass
class Staff:
    url: str
    security: OperatorClient
    security2: OperatorClient
    registration: OperatorClient
    revocation: OperatorClient
    auditor: OperatorClient


async def bootstrap_officer(
    app: web.Application, http: aiohttp.ClientSession, username: str
) -> OperatorClient:
    """A security officer as the server CLI makes one, signed in."""
    password = "officer " + secrets.token_urlsafe(12)
    uri = await app[OPERATORS].bootstrap_security_officer(username, username.title(), password)
    return await OperatorClient(app[OPERATOR_URL], http, username, password, _device(uri)).sign_in()


async def bootstrap_staff(
    app: web.Application, http: aiohttp.ClientSession, base_url: str
) -> Staff:
    url = app[OPERATOR_URL]
    suffix = secrets.token_hex(3)
    security = await bootstrap_officer(app, http, f"security.{suffix}")
    security2 = await bootstrap_officer(app, http, f"security2.{suffix}")
    staff = Staff(
        url=url,
        security=security,
        security2=security2,
        registration=await security.new_operator(["registration_officer"]),
        revocation=await security.new_operator(["revocation_officer"]),
        auditor=await security.new_operator(["auditor"]),
    )
    DESKS[base_url] = staff.registration
    STAFF[base_url] = staff
    return staff


def real_time_device(uri: str) -> TotpDevice:
    """An authenticator on the real clock, for a service in another process."""
    totp = pyotp.parse_uri(uri)
    assert isinstance(totp, pyotp.TOTP)
    return TotpDevice(totp)


async def registration_desk(
    operator_url: str, http: aiohttp.ClientSession, officer: str, password: str, officer_uri: str
) -> OperatorClient:
    """A registration officer of a service in another process, created by
    its security officer (`create_security_officer` in tests/serving.py)
    and set up with the setup code, as staff would."""
    security = await OperatorClient(
        operator_url, http, officer, password, real_time_device(officer_uri)
    ).sign_in()
    name = f"registration.{secrets.token_hex(3)}"
    created = await security.request(
        "POST",
        "/operator/api/v1/operators",
        {"username": name, "display_name": name.title(), "roles": ["registration_officer"]},
    )
    desk_password = "operator " + secrets.token_urlsafe(12)
    setup = await security.request(
        "POST",
        "/operator/api/v1/setup",
        {"setup_code": created["setup_code"], "password": desk_password},
    )
    device = real_time_device(setup["provisioning_uri"])
    await security.request(
        "POST",
        "/operator/api/v1/setup/confirm",
        {"setup_code": created["setup_code"], "otp": await device.fresh_code()},
    )
    return await OperatorClient(operator_url, http, name, desk_password, device).sign_in()
