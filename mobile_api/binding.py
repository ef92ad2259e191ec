"""Binding and revoking a device: who may make a phone a factor.

- **Enrolment** (the enrolment token of a redeemed identity proofing, at
  first enrolment or after a re-proofing): a face check passed just now
  against the proofed face. The
  activation code or the remote proofing that gave the token is the
  possession of that moment, and the key password does not exist yet.
- **Any later device**: what signing needs. A face check, the key password
  and the possession factor the account already has (a TOTP code, or an
  assertion of a device already bound), in one counted attempt on the
  credential.
- **Revoking** (a lost phone): a face check and the key password; the
  phone may be the very factor that is lost. Its owner's pending signing
  requests and live SADs end at once. (Revocation by a registration officer at the desk
  is not built yet.)
"""

from __future__ import annotations

from typing import Any

from cloudsign.accounts import ENROLMENT, Owner, Possession
from cloudsign.credentials import Credential, CredentialService
from cloudsign.errors import ForbiddenError
from cloudsign.faces import FaceService
from cloudsign.signing import FactorCheck, SigningService
from hsm_bridge import TransportMessage
from mobile_api.devices import Device, DeviceService, IssuedChallenge, check_name
from mobile_api.requests import SigningRequests


class DeviceBinding:
    def __init__(
        self,
        devices: DeviceService,
        requests: SigningRequests,
        credentials: CredentialService,
        faces: FaceService,
        factors: FactorCheck,
        signing: SigningService,
    ) -> None:
        self.signing = signing
        self.devices = devices
        self.requests = requests
        self.credentials = credentials
        self.faces = faces
        self.factors = factors

    async def options(self, owner: Owner) -> IssuedChallenge:
        await self._first_or_full(owner)
        return await self.devices.registration_options(owner)

    async def bind(
        self,
        owner: Owner,
        challenge_id: str,
        credential: dict[str, Any],
        name: str,
        face_challenge_id: str | None,
        password_key: TransportMessage | None,
        possession: Possession | None,
    ) -> Device:
        name = check_name(name)
        if await self._first_or_full(owner):
            await self.faces.consume(owner.id, face_challenge_id)
        else:
            cred = await self._credential(owner)
            await self.factors.verify(cred, password_key, possession, face_challenge_id)
        return await self.devices.register(owner, challenge_id, credential, name)

    async def revoke(
        self,
        owner: Owner,
        device_id: str,
        face_challenge_id: str | None,
        password_key: TransportMessage | None,
    ) -> None:
        owner.require_full()
        cred = await self._credential(owner)
        await self.factors.verify(cred, password_key, None, face_challenge_id, require_otp=False)
        await self.devices.revoke(owner.id, device_id, by="owner")
        await self.requests.end_pending(owner.id, "the device was revoked")
        self.signing.end_authorizations(owner.id)

    async def _first_or_full(self, owner: Owner) -> bool:
        """True for a first enrolment's binding; a full session otherwise."""
        if owner.scope == ENROLMENT:
            # A redeemed proofing (first enrolment or re-proofing) is the
            # possession of the moment, as for the new key it leads to.
            if owner.proofing_id is None:
                raise ForbiddenError("log in to bind another device")
            return True
        owner.require_full()
        return False

    async def _credential(self, owner: Owner) -> Credential:
        ids = await self.credentials.active_ids(owner.id)
        if not ids:
            raise ForbiddenError("no active key: enrol again through identity proofing")
        return await self.credentials.active(owner.id, ids[0])
