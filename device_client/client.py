"""The reference device client: what the mobile app does, over real HTTP.

It keeps the key password on the device: K_pw is derived here (Argon2id, in
a worker thread so an asyncio caller is not blocked) and only its wrap for a
one-time HSM key leaves. Tests enrol and sign through it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
import pyotp

from device_client import approval
from device_client.authenticator import SoftAuthenticator, unb64url
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


def frames_form(frames: list[bytes]) -> aiohttp.FormData:
    form = aiohttp.FormData()
    for i, frame in enumerate(frames):
        form.add_field("frame", frame, filename=f"f{i}.jpg", content_type="image/jpeg")
    return form


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

    def _take_session(self, body: dict[str, Any]) -> dict[str, Any]:
        self.access_token = body["access_token"]
        self.owner_id = body["owner_id"]
        return body

    # -- identity proofing and enrolment ------------------------------------------

    async def activate(self, code: str) -> dict[str, Any]:
        """Redeem the registration desk's activation code: an enrolment session."""
        return self._take_session(await self.request("POST", "/api/v1/activations", {"code": code}))

    async def remote_proofing(self, iin: str, email: str) -> dict[str, Any]:
        """Start a remote proofing: the liveness challenge to answer."""
        result: dict[str, Any] = await self.request(
            "POST", "/api/v1/proofings/remote", {"iin": iin, "email": email}
        )
        return result

    async def finish_remote_proofing(self, capture_id: str, frames: list[bytes]) -> dict[str, Any]:
        """The live burst, matched against the registry's photo: an enrolment session."""
        form = frames_form(frames)
        return self._take_session(
            await self._post_form(f"/api/v1/proofings/remote/{capture_id}/burst", form, {})
        )

    async def accept_consents(self, language: str = "en") -> list[str]:
        texts = await self.request("GET", f"/api/v1/consent-texts?language={language}")
        for t in texts:
            await self.request(
                "POST",
                "/api/v1/me/consents",
                {
                    "kind": t["kind"],
                    "version": t["version"],
                    "sha256": t["sha256"],
                    "language": t["language"],
                },
            )
        return [t["kind"] for t in texts]

    async def setup_totp(self, path: str = "/api/v1/me/totp") -> TotpDevice:
        """Scan the provisioning URI (as an authenticator app would) and confirm it."""
        body = await self.request("POST", path)
        return await self._confirm_totp(body["provisioning_uri"])

    async def _confirm_totp(self, provisioning_uri: str) -> TotpDevice:
        totp = pyotp.parse_uri(provisioning_uri)
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
        self,
        password: str,
        otp: str | None,
        face_challenge_id: str | None,
        algorithm: str = "ec-p256",
        *,
        device: SoftAuthenticator | None = None,
    ) -> dict[str, Any]:
        """The key and certificate that finish an enrolment (the session
        becomes a full one). Possession: the TOTP code, or the bound phone."""
        wrapped = await self.wrap_password(password, "credential.create")
        body: dict[str, Any] = {
            "algorithm": algorithm,
            "password_key": wrapped.to_json(),
            "face_challenge_id": face_challenge_id,
        }
        if device is not None:
            body["device"] = await self.device_proof(device, "enrol")
        else:
            body["otp"] = otp
        result: dict[str, Any] = await self.request("POST", "/api/v1/me/credentials", body)
        return result

    async def credentials(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self.request("GET", "/api/v1/me/credentials")
        return result

    # -- logging in --------------------------------------------------------------

    async def login(
        self,
        iin: str,
        otp: str | None,
        password: str,
        *,
        device: SoftAuthenticator | None = None,
    ) -> dict[str, Any]:
        """Two factors: the TOTP code (or the bound phone's assertion over the
        login challenge) and a proof of the key password made here (K_pw
        wrapped for the login challenge's one-time key)."""
        challenge = await self.request("POST", "/api/v1/sessions/challenge", {"iin": iin})
        kpw = await asyncio.to_thread(
            derive_password_key, password, Argon2Params.from_json(challenge["key_params"])
        )
        wrapped = wrap_for_transport(
            kpw, challenge["transport_key_id"], base64.b64decode(challenge["public_key"])
        )
        login: dict[str, Any] = {"iin": iin, "password_key": wrapped.to_json()}
        if device is not None:
            dc = challenge["device_challenge"]
            login["device"] = {
                "challenge_id": dc["challenge_id"],
                "credential": device.get({"rpId": device.rp_id, "challenge": dc["challenge"]}),
            }
        else:
            login["otp"] = otp
        body = await self.request("POST", "/api/v1/sessions", login)
        return self._take_session(body)

    # -- changes that need every factor -------------------------------------------

    async def _factors(
        self, password: str | None, otp: str | None, face_challenge_id: str | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"face_challenge_id": face_challenge_id}
        if otp is not None:
            body["otp"] = otp
        if password is not None:
            body["password_key"] = (await self.wrap_password(password, "authorize")).to_json()
        return body

    async def delete_credential(
        self,
        credential_id: str,
        *,
        password: str | None,
        otp: str | None,
        face_challenge_id: str | None,
    ) -> None:
        await self.request(
            "DELETE",
            f"/api/v1/me/credentials/{credential_id}",
            await self._factors(password, otp, face_challenge_id),
        )

    async def delete_account(
        self, *, password: str | None, otp: str | None, face_challenge_id: str | None
    ) -> None:
        await self.request(
            "DELETE", "/api/v1/me", await self._factors(password, otp, face_challenge_id)
        )

    async def replace_face(
        self,
        images: list[bytes],
        *,
        password: str | None,
        otp: str | None,
        face_challenge_id: str | None,
    ) -> dict[str, Any]:
        """A new face template; the face check matched the current one."""
        body = await self._factors(password, otp, face_challenge_id)
        body["images"] = [base64.b64encode(i).decode() for i in images]
        result: dict[str, Any] = await self.request("PUT", "/api/v1/me/face", body)
        return result

    async def change_password(
        self,
        credential_id: str,
        *,
        password: str | None,
        new_password: str,
        otp: str | None,
        face_challenge_id: str | None,
    ) -> None:
        body = await self._factors(password, otp, face_challenge_id)
        body["new_password_key"] = (
            await self.wrap_password(new_password, "credential.create")
        ).to_json()
        await self.request("POST", f"/api/v1/me/credentials/{credential_id}/password", body)

    async def rekey(
        self,
        credential_id: str,
        *,
        password: str | None,
        new_password: str,
        otp: str | None,
        face_challenge_id: str | None,
        algorithm: str = "ec-p256",
    ) -> dict[str, Any]:
        """A new key and certificate; the old certificate is revoked (superseded)."""
        body = await self._factors(password, otp, face_challenge_id)
        body["new_password_key"] = (
            await self.wrap_password(new_password, "credential.create")
        ).to_json()
        body["algorithm"] = algorithm
        result: dict[str, Any] = await self.request(
            "POST", f"/api/v1/me/credentials/{credential_id}/rekey", body
        )
        return result

    async def reset_totp(
        self, *, password: str | None, face_challenge_id: str | None
    ) -> TotpDevice:
        """A new authenticator (face and password), confirmed with its first code."""
        body = await self.request(
            "POST", "/api/v1/me/totp/reset", await self._factors(password, None, face_challenge_id)
        )
        return await self._confirm_totp(body["provisioning_uri"])

    # -- face -------------------------------------------------------------------

    async def face_challenge(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("POST", "/api/v1/me/face-challenges")
        return result

    async def send_burst(self, challenge_id: str, frames: list[bytes]) -> dict[str, Any]:
        return await self._post_form(
            f"/api/v1/me/face-challenges/{challenge_id}/burst", frames_form(frames), {}
        )

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
        level: str | None = None,
    ) -> tuple[str, bytes]:
        """Returns (signature id, .p7s, signed PDF or signed XML); `level`
        B, T, LT or LTA as the format offers (the service's default: B)."""
        payload: dict[str, Any] = {"SAD": sad, "format": signature_format, "name": name}
        if level is not None:
            payload["level"] = level
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

    async def sign_container(
        self,
        credential_id: str,
        sad: str,
        documents: list[tuple[str, bytes, str | None]],
        *,
        name: str | None = None,
        level: str | None = None,
    ) -> tuple[str, bytes]:
        """One ASiC-E container (CAdES) over `documents`, each (name inside
        the container, bytes, MIME type or None); the SAD must cover the
        SHA-256 of every one. Returns (signature id, the .asice); `level` B,
        T or LT (the service's default: B)."""
        payload: dict[str, Any] = {
            "SAD": sad,
            "container": "asic-e",
            "documents": [
                {"name": n, "content": base64.b64encode(content).decode()}
                | ({"mime_type": mime} if mime is not None else {})
                for n, content, mime in documents
            ],
        }
        if name is not None:
            payload["name"] = name
        if level is not None:
            payload["level"] = level
        async with self.session.post(
            self.base_url.rstrip("/") + f"/api/v1/me/credentials/{credential_id}/sign-container",
            json=payload,
            headers={"Authorization": f"Bearer {self.access_token}"},
        ) as resp:
            if resp.status >= 400:
                raise ApiError(resp.status, await resp.json(content_type=None))
            return resp.headers["X-Signature-Id"], await resp.read()

    async def documents(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self.request("GET", "/api/v1/me/documents")
        return result

    # -- the phone: a bound device and signing requests approved on it ------------

    async def device_proof(self, device: SoftAuthenticator, purpose: str) -> dict[str, Any]:
        """An assertion of the bound phone over a fresh challenge for `purpose`."""
        issued = await self.request("POST", "/api/v1/me/devices/challenge", {"purpose": purpose})
        return {"challenge_id": issued["challenge_id"], "credential": device.get(issued["options"])}

    async def bind_device(
        self,
        device: SoftAuthenticator,
        name: str,
        *,
        face_challenge_id: str | None,
        password: str | None = None,
        otp: str | None = None,
        other_device: SoftAuthenticator | None = None,
    ) -> dict[str, Any]:
        """Register the phone's platform credential. At enrolment: the face
        check; later: the face check, the password and a possession factor."""
        options = await self.request("POST", "/api/v1/me/devices/registration", {})
        credential = device.create(options["options"])
        body: dict[str, Any] = {
            "challenge_id": options["challenge_id"],
            "credential": credential,
            "name": name,
            "face_challenge_id": face_challenge_id,
        }
        if password is not None:
            body["password_key"] = (await self.wrap_password(password, "authorize")).to_json()
        if other_device is not None:
            body["device"] = await self.device_proof(other_device, "authorize")
        elif otp is not None:
            body["otp"] = otp
        result: dict[str, Any] = await self.request("POST", "/api/v1/me/devices", body)
        return result

    async def devices(self) -> list[dict[str, Any]]:
        result = await self.request("GET", "/api/v1/me/devices")
        return list(result["devices"])

    async def revoke_device(
        self, device_id: str, *, password: str | None, face_challenge_id: str | None
    ) -> None:
        body: dict[str, Any] = {"face_challenge_id": face_challenge_id}
        if password is not None:
            body["password_key"] = (await self.wrap_password(password, "authorize")).to_json()
        await self.request("DELETE", f"/api/v1/me/devices/{device_id}", body)

    async def create_signing_request(
        self,
        documents: list[dict[str, Any]],
        display_text: str,
        *,
        level: str = "B",
        credential_id: str | None = None,
    ) -> dict[str, Any]:
        """From the requesting screen: `documents` as {name, format, content?
        (bytes), hash? (bytes)}."""
        body: dict[str, Any] = {
            "display_text": display_text,
            "level": level,
            "documents": [
                {
                    "name": d["name"],
                    "format": d["format"],
                    **(
                        {"content": base64.b64encode(d["content"]).decode()}
                        if "content" in d
                        else {}
                    ),
                    **({"hash": base64.b64encode(d["hash"]).decode()} if "hash" in d else {}),
                }
                for d in documents
            ],
        }
        if credential_id is not None:
            body["credential_id"] = credential_id
        result: dict[str, Any] = await self.request("POST", "/api/v1/signing-requests", body)
        return result

    async def signing_request(self, request_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", f"/api/v1/signing-requests/{request_id}")
        return result

    async def qr_frame(self, request_id: str) -> str:
        body = await self.request("GET", f"/api/v1/signing-requests/{request_id}/qr")
        return str(body["qr"])

    async def claim_qr(self, qr: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("POST", "/api/v1/device/qr", {"qr": qr})
        return result

    async def inbox(self) -> list[dict[str, Any]]:
        body = await self.request("GET", "/api/v1/device/requests")
        return list(body["requests"])

    async def request_details(self, request_id: str) -> dict[str, Any]:
        """What is to be signed, checked here: each document sent whole is
        fetched and hashed, and must be the hash the request commits to."""
        details: dict[str, Any] = await self.request("GET", f"/api/v1/device/requests/{request_id}")
        for doc in details["documents"]:
            if doc["size"] is not None:
                content = await self.raw(
                    f"/api/v1/device/requests/{request_id}/documents/{doc['position']}"
                )
                if hashlib.sha256(content).digest() != base64.b64decode(doc["hash"]):
                    raise ValueError(f"document {doc['name']!r} is not what the request commits to")
        return details

    async def raw(self, path: str) -> bytes:
        headers = {"Authorization": f"Bearer {self.access_token}"} if self.access_token else {}
        async with self.session.get(self.base_url.rstrip("/") + path, headers=headers) as resp:
            if resp.status >= 400:
                raise ApiError(resp.status, {"detail": await resp.text()})
            return await resp.read()

    async def approve(
        self,
        request_id: str,
        device: SoftAuthenticator,
        *,
        password: str | None,
        face_challenge_id: str | None,
        shown_code: str | None = None,
    ) -> dict[str, Any]:
        """Approve on the phone: the code the phone computes (and shows) from
        the request, an assertion over the approval challenge it recomputes
        (refusing a server that asks for another), the face, the password."""
        details = await self.request_details(request_id)
        hashes = [base64.b64decode(d["hash"]) for d in details["documents"]]
        commitment = approval.commitment(request_id, details["hash_algorithm"], hashes)
        code = approval.verification_code(commitment)
        if shown_code is None:
            shown_code = code
        issued = await self.request("POST", f"/api/v1/device/requests/{request_id}/challenge", {})
        expected = approval.approval_challenge(commitment, shown_code, unb64url(issued["nonce"]))
        options = issued["options"]
        if unb64url(options["challenge"]) != expected:
            raise ValueError("the service asks to approve something other than what is shown")
        body: dict[str, Any] = {
            "verification_code": shown_code,
            "device": {"challenge_id": issued["challenge_id"], "credential": device.get(options)},
            "face_challenge_id": face_challenge_id,
        }
        if password is not None:
            body["password_key"] = (await self.wrap_password(password, "authorize")).to_json()
        result: dict[str, Any] = await self.request(
            "POST", f"/api/v1/device/requests/{request_id}/approval", body
        )
        return result

    async def egov_scan(self, link: str) -> dict[str, Any]:
        """Hand a scanned eGov QR (`mobileSign:https://...`) to the service,
        which fetches the procedure itself: the signing request to approve."""
        result: dict[str, Any] = await self.request(
            "POST", "/api/v1/device/egov-qr", {"link": link}
        )
        return result

    async def decline(self, request_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request(
            "POST", f"/api/v1/device/requests/{request_id}/decline", {}
        )
        return result
