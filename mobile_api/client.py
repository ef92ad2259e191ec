"""The reference device client: what the mobile app does, over real HTTP.

It keeps the key password on the device: K_pw is derived here (Argon2id, in
a worker thread so an asyncio caller is not blocked) and only its wrap for a
one-time HSM key leaves. Tests enrol and sign through it.
"""

from __future__ import annotations

import asyncio
import base64
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pyotp

from mobile_api.device import (
    Argon2Params,
    WrappedPasswordKey,
    derive_password_key,
    wrap_for_transport,
)


class ApiError(Exception):
    """A problem+json (or CSC) error answered by the service."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status = status
        self.body = body
        self.code = str(body.get("code") or body.get("error") or "unknown")
        super().__init__(
            f"HTTP {status} {self.code}: {body.get('detail') or body.get('error_description')}"
        )


class TotpDevice:
    """An authenticator app: codes of strictly increasing time steps, since
    the service accepts each step once."""

    def __init__(self, totp: pyotp.TOTP) -> None:
        self.totp = totp
        self._last_step = -1

    def __repr__(self) -> str:
        return "TotpDevice(***)"

    async def fresh_code(self) -> str:
        while True:
            now = time.time()
            step = int(now // self.totp.interval)
            if step > self._last_step:
                self._last_step = step
                return self.totp.at(now)
            await asyncio.sleep(self.totp.interval - (now % self.totp.interval) + 0.01)


@dataclass
class CloudsignClient:
    base_url: str
    session: aiohttp.ClientSession
    access_token: str | None = field(default=None, repr=False)
    owner_id: str | None = None

    async def request(self, method: str, path: str, json: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {self.access_token}"} if self.access_token else {}
        async with self.session.request(
            method, self.base_url.rstrip("/") + path, json=json, headers=headers
        ) as resp:
            if resp.content_type in ("application/json", "application/problem+json"):
                body = await resp.json(content_type=None)
            else:
                body = {"detail": await resp.text()}
            if resp.status >= 400:
                raise ApiError(resp.status, body)
            return body

    # -- enrolment steps ------------------------------------------------------

    async def create_account(self, identity: dict[str, str]) -> str:
        body = await self.request("POST", "/api/v1/owners", identity)
        self.access_token = body["access_token"]
        self.owner_id = body["owner_id"]
        return str(body["owner_id"])

    async def login(self, iin: str, otp: str) -> None:
        body = await self.request("POST", "/api/v1/sessions", {"iin": iin, "otp": otp})
        self.access_token = body["access_token"]
        self.owner_id = body["owner_id"]

    async def accept_consents(self) -> list[str]:
        texts = await self.request("GET", "/api/v1/consent-texts")
        for t in texts:
            await self.request(
                "POST",
                "/api/v1/me/consents",
                {"kind": t["kind"], "version": t["version"], "sha256": t["sha256"]},
            )
        return [t["kind"] for t in texts]

    async def setup_totp(self) -> TotpDevice:
        """Scan the provisioning URI (as an authenticator app would) and confirm it."""
        body = await self.request("POST", "/api/v1/me/totp")
        totp = pyotp.parse_uri(body["provisioning_uri"])
        if not isinstance(totp, pyotp.TOTP):
            raise ValueError("the service did not send a TOTP provisioning URI")
        device = TotpDevice(totp)
        await self.request("POST", "/api/v1/me/totp/confirm", {"otp": await device.fresh_code()})
        return device

    async def key_params(self) -> Argon2Params:
        return Argon2Params.from_json(await self.request("GET", "/api/v1/me/key-params"))

    async def wrap_password(self, password: str, purpose: str) -> WrappedPasswordKey:
        """Derive K_pw on the device and wrap it for a fresh one-time HSM key."""
        params = await self.key_params()
        transport = await self.request("POST", "/api/v1/me/transport-keys", {"purpose": purpose})
        kpw = await asyncio.to_thread(derive_password_key, password, params)
        return wrap_for_transport(
            kpw, transport["transport_key_id"], base64.b64decode(transport["public_key"])
        )

    async def create_credential(
        self, password: str, otp: str, algorithm: str = "ec-p256"
    ) -> dict[str, Any]:
        wrapped = await self.wrap_password(password, "credential.create")
        result: dict[str, Any] = await self.request(
            "POST",
            "/api/v1/me/credentials",
            {"algorithm": algorithm, "password_key": wrapped.to_json(), "otp": otp},
        )
        return result

    async def credentials(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self.request("GET", "/api/v1/me/credentials")
        return result

    async def delete_credential(self, credential_id: str, otp: str) -> None:
        await self.request("DELETE", f"/api/v1/me/credentials/{credential_id}", {"otp": otp})
