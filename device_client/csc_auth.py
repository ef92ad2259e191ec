"""A pyHanko `CSCAuthorizationManager` that completes cloudsign's factors.

pyHanko's `CSCSigner` asks its authorisation manager for a SAD bound to the
hashes it is about to sign. This one does what the citizen's phone does:
passes a face check (the `face_check` callable captures and sends a burst),
derives and wraps the key password for a one-time HSM key, takes a fresh
TOTP code, then calls `credentials/authorize` with `PIN` (the wrapped key,
never the password), `OTP` and `FACE`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from pyhanko.sign.signers.csc_signer import (
    CSCAuthorizationInfo,
    CSCAuthorizationManager,
    CSCCredentialInfo,
    CSCServiceSessionInfo,
)

from device_client.client import ApiError, CloudsignClient, TotpDevice


class CloudsignAuthorizationManager(CSCAuthorizationManager):
    def __init__(
        self,
        session_info: CSCServiceSessionInfo,
        credential_info: CSCCredentialInfo,
        *,
        client: CloudsignClient,
        password: str,
        totp: TotpDevice,
        face_check: Callable[[], Awaitable[str]],
    ) -> None:
        super().__init__(session_info, credential_info)
        self._client = client
        self._password = password
        self._totp = totp
        self._face_check = face_check

    def __repr__(self) -> str:
        return f"CloudsignAuthorizationManager(credential={self.csc_session_info.credential_id!r})"

    async def authorize_signature(self, hash_b64s: list[str]) -> CSCAuthorizationInfo:
        face_id = await self._face_check()
        wrapped = await self._client.wrap_password(self._password, "authorize")
        request = self.format_csc_auth_request(
            pin=wrapped.to_pin(), otp=await self._totp.fresh_code(), hash_b64s=hash_b64s
        )
        request["FACE"] = face_id
        url: str = self.csc_session_info.endpoint_url(  # type: ignore[no-untyped-call]
            "credentials/authorize"
        )
        async with self._client.session.post(
            url,
            json=request,
            headers=self.auth_headers,
        ) as response:
            body = await response.json(content_type=None)
            if response.status >= 400:
                raise ApiError(response.status, body)
        return self.parse_csc_auth_response(body)
