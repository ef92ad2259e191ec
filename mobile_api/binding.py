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
  requests and live SADs end at once.
- **Revoking at the desk** (the phone and the password both lost): a
  registration officer checks the citizen's document and captures the
  face live (the desk's capture, as for an identity proofing); the capture
  must match the account's enrolled face, counted on the account's face
  limit, so no officer can revoke a phone without its owner in front of
  them. Then every bound device (or the one named) is revoked, with the
  pending requests and live SADs; each revocation an event naming the
  officer.
"""

from __future__ import annotations

from typing import Any

from cloudsign.accounts import ENROLMENT, AccountService, Owner, Possession
from cloudsign.credentials import Credential, CredentialService
from cloudsign.errors import FactorError, ForbiddenError, NotFoundError
from cloudsign.faces import FaceService
from cloudsign.guard import Guard, Limits
from cloudsign.operators import Operator, OperatorService, Role
from cloudsign.proofing import ProofingService
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
        desk: DeskAccess,
    ) -> None:
        self.desk = desk
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
        await self.signing.end_authorizations(owner.id)

    async def revoke_at_desk(
        self,
        officer: Operator,
        iin: str,
        document: dict[str, str],
        capture_id: str,
        device_id: str | None,
    ) -> list[Device]:
        """The officer's live capture of the citizen matches the account's
        face: the devices (all, or `device_id`) are revoked."""
        OperatorService.require(officer, Role.REGISTRATION)
        template = await self.desk.proofing.take_desk_capture(officer, capture_id)
        owner_id = await self.desk.accounts.active_owner_by_iin(iin)
        if owner_id is None:
            raise NotFoundError("no active account for this IIN")
        guard, limits = self.desk.guard, self.desk.limits
        attempt = await guard.attempt(
            [(limits.face, owner_id), (limits.operator, officer.id)],
            factor="desk-face",
            owner_id=owner_id,
        )
        if not await self.faces.is_enrolled_face(owner_id, template):
            await guard.failure(attempt, "the desk capture is not the enrolled face")
            raise FactorError("the captured face is not this account's enrolled face")
        await guard.success(attempt)
        bound = [d for d in await self.devices.of_owner(owner_id) if d.revoked_at is None]
        chosen = [d for d in bound if device_id is None or d.id == device_id]
        if not chosen:
            raise NotFoundError("no such bound device")
        checked = f"{officer.username} ({document.get('type', '')})"
        for device in chosen:
            await self.devices.revoke(owner_id, device.id, by="desk", operator=checked)
        await self.requests.end_pending(owner_id, "the device was revoked at the desk")
        await self.signing.end_authorizations(owner_id)
        ids = {d.id for d in chosen}
        return [d for d in await self.devices.of_owner(owner_id) if d.id in ids]

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


class DeskAccess:
    """What desk revocation needs beside the citizen's own factors."""

    def __init__(
        self, proofing: ProofingService, accounts: AccountService, guard: Guard, limits: Limits
    ) -> None:
        self.proofing = proofing
        self.accounts = accounts
        self.guard = guard
        self.limits = limits
