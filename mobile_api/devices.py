"""Bound devices: WebAuthn platform credentials as the app's possession factor.

A phone is bound by registering a WebAuthn credential (user verification
required, so the phone's own screen lock or biometric unlocks it) against a
challenge the service issued; py_webauthn (`webauthn` on PyPI) verifies the
registration and every later assertion. The service keeps the credential's
public key and signature counter, never a secret.

Challenges are one-time rows: the assertion's `clientDataJSON.challenge`
names its row by SHA-256, and the row is claimed (compare-and-set on
`used_at`) before the signature is checked, so an assertion is never
accepted twice, even by two processes racing, and a failed one burns its
challenge. Each row carries its purpose (`login`, `authorize`, `enrol`,
`bind`, or `approve:<request id>`): an assertion made for one purpose or
signing request is refused for any other. Every assertion
check is counted by the guard per account and per address, like a TOTP
code; a revoked device's assertions are refused at once.

What binding a device requires (checked by `mobile_api.service`, not here):
at first enrolment, the enrolment token of a redeemed identity proofing and
a face check passed just now; later, a face check, the key password and the
possession factor the account already has (a TOTP code or another bound
device), like signing.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from urllib.parse import urlsplit

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers.exceptions import (
    InvalidAuthenticationResponse,
    InvalidJSONStructure,
    InvalidRegistrationResponse,
)
from webauthn.helpers.structs import (
    AuthenticatorAttachment,
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from cloudsign.accounts import DeviceProof, Owner
from cloudsign.clock import Clock
from cloudsign.errors import ConflictError, FactorError, NotFoundError, ValidationError
from cloudsign.events import EventType, append_event
from cloudsign.guard import Guard, Limits
from cloudsign.storage import Database
from cloudsign.web.client import client_address
from mobile_api.settings import MobileSettings
from mobile_api.tables import device_challenges, devices

CHALLENGE_BYTES: Final = 32
PURPOSES: Final = frozenset({"login", "authorize", "enrol", "bind"})
APPROVAL_PREFIX: Final = "approve:"


def approval_purpose(request_id: str) -> str:
    """The purpose of an approval's challenge: it names its request."""
    return APPROVAL_PREFIX + request_id


@dataclass(frozen=True)
class Device:
    id: str
    name: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class IssuedChallenge:
    id: str
    challenge: bytes
    #: The WebAuthn options for navigator.credentials.create/get, as JSON.
    options: dict[str, Any]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _hash(challenge: bytes) -> str:
    return hashlib.sha256(challenge).hexdigest()


def _signed_challenge(credential: dict[str, Any]) -> bytes:
    """The challenge a credential response says it signed (not yet trusted)."""
    try:
        client_data = json.loads(unb64url(credential["response"]["clientDataJSON"]))
        challenge = client_data["challenge"]
        if not isinstance(challenge, str) or len(challenge) > 200:
            raise ValueError("challenge")
        return unb64url(challenge)
    except (ValueError, KeyError, TypeError) as e:
        raise FactorError("the device's answer is malformed") from e


class DeviceService:
    """Registration, assertions, listing and revocation of bound devices;
    also the accounts' `DeviceVerifier`."""

    def __init__(
        self,
        db: Database,
        guard: Guard,
        limits: Limits,
        settings: MobileSettings,
        *,
        clock: Clock,
    ) -> None:
        self.db = db
        self.guard = guard
        self.limits = limits
        self.settings = settings
        self.clock = clock

    @property
    def rp_id(self) -> str:
        return self.settings.rp_id or (urlsplit(self.settings.public_url).hostname or "localhost")

    # -- challenges ---------------------------------------------------------------

    async def _store_challenge(
        self,
        owner_id: str | None,
        purpose: str,
        challenge: bytes,
    ) -> str:
        if purpose not in PURPOSES and not purpose.startswith(APPROVAL_PREFIX):
            raise ValueError(f"unknown purpose {purpose!r}")
        challenge_id = str(uuid.uuid4())
        if owner_id is None:
            # A decoy for an unknown IIN: the same form, remembered nowhere.
            return challenge_id
        now = self.clock()
        async with self.db.transaction() as conn:
            await conn.execute(
                insert(device_challenges).values(
                    id=challenge_id,
                    owner_id=owner_id,
                    purpose=purpose,
                    challenge_hash=_hash(challenge),
                    created_at=now,
                    expires_at=now + self.settings.challenge_ttl,
                )
            )
        return challenge_id

    async def issue_challenge(self, owner_id: str | None, purpose: str) -> tuple[str, bytes]:
        challenge = secrets.token_bytes(CHALLENGE_BYTES)
        return await self._store_challenge(owner_id, purpose, challenge), challenge

    async def issue_approval_challenge(
        self, owner_id: str, request_id: str, challenge: bytes
    ) -> IssuedChallenge:
        """A challenge the caller computed over one signing request
        (mobile_api.codes.approval_challenge), for that request only."""
        challenge_id = await self._store_challenge(
            owner_id, approval_purpose(request_id), challenge
        )
        return IssuedChallenge(
            challenge_id, challenge, await self._get_options(owner_id, challenge)
        )

    async def assertion_options(self, owner_id: str, purpose: str) -> IssuedChallenge:
        challenge_id, challenge = await self.issue_challenge(owner_id, purpose)
        return IssuedChallenge(
            challenge_id, challenge, await self._get_options(owner_id, challenge)
        )

    async def _get_options(self, owner_id: str, challenge: bytes) -> dict[str, Any]:
        options = generate_authentication_options(
            rp_id=self.rp_id,
            challenge=challenge,
            timeout=int(self.settings.challenge_ttl.total_seconds() * 1000),
            allow_credentials=[
                PublicKeyCredentialDescriptor(id=raw) for raw in await self._raw_ids(owner_id)
            ],
            user_verification=UserVerificationRequirement.REQUIRED,
        )
        parsed: dict[str, Any] = json.loads(options_to_json(options))
        return parsed

    async def _claim(
        self,
        owner_id: str,
        challenge_id: str,
        challenge: bytes,
        purpose: str,
    ) -> None:
        now = self.clock()
        conditions = [
            device_challenges.c.id == challenge_id,
            device_challenges.c.owner_id == owner_id,
            device_challenges.c.purpose == purpose,
            device_challenges.c.challenge_hash == _hash(challenge),
            device_challenges.c.used_at.is_(None),
            device_challenges.c.expires_at > now,
        ]
        async with self.db.transaction() as conn:
            result = await conn.execute(
                update(device_challenges).where(*conditions).values(used_at=now)
            )
        if result.rowcount != 1:
            raise FactorError("the device answered an unknown, used or expired challenge")

    # -- registration -------------------------------------------------------------

    async def registration_options(self, owner: Owner) -> IssuedChallenge:
        count = await self._count(owner.id)
        if count >= self.settings.max_devices:
            raise ConflictError(f"at most {self.settings.max_devices} devices; revoke one first")
        challenge_id, challenge = await self.issue_challenge(owner.id, "bind")
        options = generate_registration_options(
            rp_id=self.rp_id,
            rp_name=self.settings.rp_name,
            user_id=owner.id.encode(),
            user_name=owner.iin,
            user_display_name=owner.full_name,
            challenge=challenge,
            timeout=int(self.settings.challenge_ttl.total_seconds() * 1000),
            authenticator_selection=AuthenticatorSelectionCriteria(
                authenticator_attachment=AuthenticatorAttachment.PLATFORM,
                resident_key=ResidentKeyRequirement.PREFERRED,
                user_verification=UserVerificationRequirement.REQUIRED,
            ),
            exclude_credentials=[
                PublicKeyCredentialDescriptor(id=raw) for raw in await self._raw_ids(owner.id)
            ],
        )
        return IssuedChallenge(challenge_id, challenge, json.loads(options_to_json(options)))

    async def register(
        self, owner: Owner, challenge_id: str, credential: dict[str, Any], name: str
    ) -> Device:
        """Check the attestation against the challenge and keep the key.
        The caller has checked the factors binding needs."""
        challenge = _signed_challenge(credential)
        await self._claim(owner.id, challenge_id, challenge, "bind")
        try:
            verified = verify_registration_response(
                credential=credential,
                expected_challenge=challenge,
                expected_rp_id=self.rp_id,
                expected_origin=self.settings.origins,
                require_user_verification=True,
            )
        except (InvalidRegistrationResponse, InvalidJSONStructure) as e:
            raise FactorError(f"the device registration was refused: {_short(e)}") from e
        now = self.clock()
        device_id = str(uuid.uuid4())
        try:
            async with self.db.transaction() as conn:
                await conn.execute(
                    insert(devices).values(
                        id=device_id,
                        owner_id=owner.id,
                        name=name,
                        credential_id=verified.credential_id,
                        public_key=verified.credential_public_key,
                        sign_count=verified.sign_count,
                        aaguid=str(verified.aaguid),
                        created_at=now,
                    )
                )
                await append_event(
                    conn,
                    EventType.DEVICE_BIND,
                    owner_id=owner.id,
                    data={"device": device_id, "aaguid": str(verified.aaguid)},
                    at=now,
                )
        except IntegrityError as e:
            raise ConflictError("this authenticator is already bound") from e
        return Device(device_id, name, now, None, None)

    # -- assertions ---------------------------------------------------------------

    async def verify(
        self,
        owner_id: str,
        proof: DeviceProof,
        purpose: str,
    ) -> str:
        """A bound, unrevoked device's assertion over an unused challenge
        issued to this owner for `purpose`: the device id."""
        attempt = await self.guard.attempt(
            [(self.limits.device, owner_id), (self.limits.address, client_address())],
            factor="device",
            owner_id=owner_id,
        )
        try:
            device_id = await self._verify(owner_id, proof, purpose)
        except FactorError as e:
            await self.guard.failure(attempt, e.detail)
            raise
        await self.guard.success(attempt)
        return device_id

    async def _verify(self, owner_id: str, proof: DeviceProof, purpose: str) -> str:
        credential = dict(proof.credential)
        challenge = _signed_challenge(credential)
        await self._claim(owner_id, proof.challenge_id, challenge, purpose)
        try:
            raw_id = unb64url(str(credential["rawId"]))
        except ValueError as e:
            raise FactorError("the device's answer is malformed") from e
        async with self.db.read() as conn:
            row = (
                (
                    await conn.execute(
                        select(devices).where(
                            devices.c.credential_id == raw_id,
                            devices.c.owner_id == owner_id,
                            devices.c.revoked_at.is_(None),
                        )
                    )
                )
                .mappings()
                .first()
            )
        if row is None:
            raise FactorError("this device is not bound to the account (or was revoked)")
        try:
            verified = verify_authentication_response(
                credential=credential,
                expected_challenge=challenge,
                expected_rp_id=self.rp_id,
                expected_origin=self.settings.origins,
                credential_public_key=row["public_key"],
                credential_current_sign_count=row["sign_count"],
                require_user_verification=True,
            )
        except (InvalidAuthenticationResponse, InvalidJSONStructure) as e:
            raise FactorError(f"the device's assertion was refused: {_short(e)}") from e
        now = self.clock()
        async with self.db.transaction() as conn:
            result = await conn.execute(
                update(devices)
                .where(
                    devices.c.id == row["id"],
                    devices.c.revoked_at.is_(None),
                    # A cloned authenticator shows a counter that went back.
                    devices.c.sign_count <= verified.new_sign_count,
                )
                .values(sign_count=verified.new_sign_count, last_used_at=now)
            )
        if result.rowcount != 1:
            raise FactorError("the device's signature counter went back (a cloned key?)")
        return str(row["id"])

    async def device_of(self, owner_id: str, proof: DeviceProof) -> str | None:
        """The bound device a (verified) assertion came from."""
        try:
            raw_id = unb64url(str(proof.credential["rawId"]))
        except (ValueError, KeyError):
            return None
        async with self.db.read() as conn:
            found = (
                await conn.execute(
                    select(devices.c.id).where(
                        devices.c.credential_id == raw_id, devices.c.owner_id == owner_id
                    )
                )
            ).scalar()
        return None if found is None else str(found)

    async def has_devices(self, owner_id: str) -> bool:
        return await self._count(owner_id) > 0

    # -- management ---------------------------------------------------------------

    async def of_owner(self, owner_id: str) -> list[Device]:
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    select(devices)
                    .where(devices.c.owner_id == owner_id)
                    .order_by(devices.c.created_at, devices.c.id)
                )
            ).mappings()
            return [
                Device(r["id"], r["name"], r["created_at"], r["last_used_at"], r["revoked_at"])
                for r in rows
            ]

    async def revoke(
        self, owner_id: str, device_id: str, *, by: str, operator: str | None = None
    ) -> None:
        """The device's assertions are refused from now on; the caller ends
        what it had started (signing requests). `operator`: who, at the desk."""
        now = self.clock()
        async with self.db.transaction() as conn:
            result = await conn.execute(
                update(devices)
                .where(
                    devices.c.id == device_id,
                    devices.c.owner_id == owner_id,
                    devices.c.revoked_at.is_(None),
                )
                .values(revoked_at=now, revoked_by=by)
            )
            if result.rowcount != 1:
                raise NotFoundError("no such bound device")
            await append_event(
                conn,
                EventType.DEVICE_REVOKE,
                owner_id=owner_id,
                data={"device": device_id, "by": by}
                | ({} if operator is None else {"operator": operator}),
                at=now,
            )

    async def erase_owner(self, conn: AsyncConnection, owner_id: str, at: datetime) -> None:
        """Account deletion (accounts.AccountEraser): the devices' keys go,
        the rows stay revoked (the events name them)."""
        await conn.execute(
            update(devices)
            .where(devices.c.owner_id == owner_id)
            .values(
                revoked_at=func.coalesce(devices.c.revoked_at, at),
                revoked_by=func.coalesce(devices.c.revoked_by, "account"),
                public_key=b"",
            )
        )
        await conn.execute(
            update(device_challenges)
            .where(device_challenges.c.owner_id == owner_id, device_challenges.c.used_at.is_(None))
            .values(used_at=at)
        )

    async def _count(self, owner_id: str) -> int:
        async with self.db.read() as conn:
            return int(
                (
                    await conn.execute(
                        select(func.count())
                        .select_from(devices)
                        .where(devices.c.owner_id == owner_id, devices.c.revoked_at.is_(None))
                    )
                ).scalar_one()
            )

    async def _raw_ids(self, owner_id: str) -> list[bytes]:
        async with self.db.read() as conn:
            return [
                bytes(r[0])
                for r in await conn.execute(
                    select(devices.c.credential_id).where(
                        devices.c.owner_id == owner_id, devices.c.revoked_at.is_(None)
                    )
                )
            ]


def _short(error: Exception) -> str:
    text = str(error)
    return text if len(text) <= 160 else text[:157] + "..."


def check_name(name: str) -> str:
    if not name.strip():
        raise ValidationError("the device needs a name", field="name")
    return name.strip()
