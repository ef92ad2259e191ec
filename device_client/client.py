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
from typing import Any, Protocol

import aiohttp
import pyotp

from device_client.device import (
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


class StepClock(Protocol):
    """The authenticator's time: `time()` in seconds since the epoch, and
    waiting for a later moment (a phone waits; a test moves its clock)."""

    def time(self) -> float: ...

    async def wait_until(self, moment: float) -> None: ...


class RealClock:
    def time(self) -> float:
        return time.time()

    async def wait_until(self, moment: float) -> None:
        await asyncio.sleep(max(0.0, moment - time.time()))


class TotpDevice:
    """An authenticator app: codes of strictly increasing time steps, since
    the service accepts each step once."""

    def __init__(self, totp: pyotp.TOTP, clock: StepClock | None = None) -> None:
        self.totp = totp
        self.clock = clock or RealClock()
        self._last_step = -1

    def __repr__(self) -> str:
        return "TotpDevice(***)"

    async def fresh_code(self) -> str:
        interval = self.totp.interval
        while True:
            now = self.clock.time()
            step = int(now // interval)
            if step > self._last_step:
                self._last_step = step
                return self.totp.at(now)
            await self.clock.wait_until((step + 1) * interval + 0.01)


@dataclass
class CloudsignClient:
    base_url: str
    session: aiohttp.ClientSession
    access_token: str | None = field(default=None, repr=False)
    owner_id: str | None = None
    #: The authenticator's clock for the TOTP devices this client sets up.
    clock: StepClock = field(default_factory=RealClock, repr=False)

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
        device = TotpDevice(totp, self.clock)
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

    # -- face -------------------------------------------------------------------

    async def enrol_face(self, images: list[bytes], otp: str | None = None) -> dict[str, Any]:
        form = aiohttp.FormData()
        for i, image in enumerate(images):
            form.add_field("image", image, filename=f"face{i}.jpg", content_type="image/jpeg")
        return await self._post_form("/api/v1/me/face", form, {"X-OTP": otp} if otp else {})

    async def face_challenge(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("POST", "/api/v1/me/face-challenges")
        return result

    async def send_burst(self, challenge_id: str, frames: list[bytes]) -> dict[str, Any]:
        form = aiohttp.FormData()
        for i, frame in enumerate(frames):
            form.add_field("frame", frame, filename=f"f{i}.jpg", content_type="image/jpeg")
        return await self._post_form(f"/api/v1/me/face-challenges/{challenge_id}/burst", form, {})

    async def _post_form(
        self, path: str, form: aiohttp.FormData, headers: dict[str, str]
    ) -> dict[str, Any]:
        auth = {"Authorization": f"Bearer {self.access_token}"} if self.access_token else {}
        async with self.session.post(
            self.base_url.rstrip("/") + path, data=form, headers={**auth, **headers}
        ) as resp:
            body: dict[str, Any] = await resp.json(content_type=None)
            if resp.status >= 400:
                raise ApiError(resp.status, body)
            return body

    # -- authorise and sign -------------------------------------------------------

    async def authorize(
        self,
        credential_id: str,
        hashes: list[bytes],
        *,
        password: str,
        otp: str,
        face_challenge_id: str | None,
        hash_algorithm: str = "sha256",
    ) -> str:
        wrapped = await self.wrap_password(password, "authorize")
        body = await self.request(
            "POST",
            f"/api/v1/me/credentials/{credential_id}/authorize",
            {
                "hashes": [base64.b64encode(h).decode() for h in hashes],
                "hash_algorithm": hash_algorithm,
                "password_key": wrapped.to_json(),
                "otp": otp,
                "face_challenge_id": face_challenge_id,
            },
        )
        return str(body["SAD"])

    async def sign_hashes(
        self, credential_id: str, sad: str, hashes: list[bytes], hash_algorithm: str = "sha256"
    ) -> list[bytes]:
        body = await self.request(
            "POST",
            f"/api/v1/me/credentials/{credential_id}/sign-hashes",
            {
                "SAD": sad,
                "hashes": [base64.b64encode(h).decode() for h in hashes],
                "hash_algorithm": hash_algorithm,
            },
        )
        return [base64.b64decode(s) for s in body["signatures"]]

    async def sign_document(
        self,
        credential_id: str,
        sad: str,
        *,
        document: bytes | None = None,
        document_hash: bytes | None = None,
        signature_format: str = "cades",
        name: str | None = None,
    ) -> tuple[str, bytes]:
        """Returns (signature id, .p7s or signed PDF)."""
        payload: dict[str, Any] = {"SAD": sad, "format": signature_format, "name": name}
        if document is not None:
            payload["document"] = base64.b64encode(document).decode()
        if document_hash is not None:
            payload["document_hash"] = base64.b64encode(document_hash).decode()
        headers = {"Authorization": f"Bearer {self.access_token}"}
        async with self.session.post(
            self.base_url.rstrip("/") + f"/api/v1/me/credentials/{credential_id}/sign-document",
            json=payload,
            headers=headers,
        ) as resp:
            if resp.status >= 400:
                raise ApiError(resp.status, await resp.json(content_type=None))
            return resp.headers["X-Signature-Id"], await resp.read()

    async def documents(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self.request("GET", "/api/v1/me/documents")
        return result
