"""The three factors of every signature, checked together, for signing and
for every change that needs as much (cloudsign/lifecycle).

`FactorCheck.verify` checks a TOTP code or a bound device's assertion
(possession, accounts.possession), a face check passed
just now (biometric) and the key password as K_pw wrapped for a one-time
HSM key (knowledge, verified by the HSM opening the key blob). Each factor
is counted by the guard: the code per account (accounts), the face burst
per account (faces), the key password per credential and per address
(here), counted before the HSM is asked, so parallel guesses cannot exceed
the limit; `max_failed_attempts` wrong passwords in a row lock the
credential for `lockout_seconds` (423, a `lock` event).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from cloudsign.accounts import AccountService, Possession
from cloudsign.credentials import Credential, TransportKeys
from cloudsign.errors import ConflictError, FactorError, ValidationError
from cloudsign.faces import FaceService
from cloudsign.guard import Guard, Limits
from cloudsign.web.client import client_address
from hsm_bridge import (
    KeyBlobError,
    KeyCustody,
    TransportKeyError,
    TransportMessage,
    UnlockedKey,
    WrongPasswordError,
)


class FactorCheck:
    def __init__(
        self,
        custody: KeyCustody,
        accounts: AccountService,
        faces: FaceService,
        transport: TransportKeys,
        guard: Guard,
        limits: Limits,
        on_rewrap: Callable[[Credential, bytes], Awaitable[None]] | None = None,
    ) -> None:
        """`on_rewrap` stores an owner's blob that an opening moved to a new
        master key (a rotation; `CredentialService.store_rewrapped`)."""
        self.custody = custody
        self.on_rewrap = on_rewrap
        self.accounts = accounts
        self.faces = faces
        self.transport = transport
        self.guard = guard
        self.limits = limits

    async def locked_until(self, credential_id: str) -> datetime | None:
        """The end of the credential's password lock, or None."""
        return await self.guard.locked_until(self.limits.password, credential_id)

    async def verify(
        self,
        cred: Credential,
        password_key: TransportMessage | None,
        otp: Possession | None,
        face_challenge_id: str | None,
        *,
        require_otp: bool = True,
        purpose: str = "authorize",
        device_purpose: str | None = None,
    ) -> UnlockedKey:
        """All three factors (the code may be left out only to replace the
        TOTP factor itself), as one counted attempt on the credential: five
        failed authorisations in a row, whichever factor failed, lock it.
        Returns the key with its password layer opened (still wrapped under
        the HSM master key). `purpose` names the transport key's use, and the
        device challenge's unless `device_purpose` is given (an approval's
        challenge names its signing request)."""
        if password_key is None:
            raise ValidationError("the key password (PIN) is required", field="PIN")
        attempt = await self.guard.attempt(
            [(self.limits.password, cred.id), (self.limits.address, client_address())],
            factor="authorisation",
            owner_id=cred.owner_id,
            credential_id=cred.id,
        )
        try:
            # The cheapest first: a wrong code spends no face check.
            if require_otp:
                await self.accounts.verify_possession(cred.owner_id, otp, device_purpose or purpose)
            await self.faces.consume(cred.owner_id, face_challenge_id)
            unlocked = await self._open(cred, password_key, purpose)
        except FactorError as e:
            await self.guard.failure(attempt, str(e.detail))
            raise
        await self.guard.success(attempt)
        return unlocked

    async def _open(
        self, cred: Credential, password_key: TransportMessage, purpose: str
    ) -> UnlockedKey:
        try:
            await self.transport.consume(cred.owner_id, purpose, password_key.transport_key_id)
        except ConflictError as e:
            raise FactorError(f"key password: {e.detail}") from e
        try:
            unlocked = await self.custody.unlock_owner_key(
                password_key, cred.id, cred.algorithm, cred.blob
            )
        except WrongPasswordError as e:
            raise FactorError("the key password is wrong") from e
        except TransportKeyError as e:
            raise FactorError("the wrapped key password could not be opened") from e
        except KeyBlobError as e:
            raise ConflictError("the stored key does not open; contact the centre") from e
        if unlocked.rewrapped_blob is not None and self.on_rewrap is not None:
            await self.on_rewrap(cred, unlocked.rewrapped_blob)
        return unlocked

    async def password(
        self, cred: Credential, password_key: TransportMessage, *, purpose: str
    ) -> UnlockedKey:
        """The key password alone (a login's second factor), counted per
        credential and per address."""
        attempt = await self.guard.attempt(
            [(self.limits.password, cred.id), (self.limits.address, client_address())],
            factor="password",
            owner_id=cred.owner_id,
            credential_id=cred.id,
        )
        try:
            unlocked = await self._open(cred, password_key, purpose)
        except FactorError as e:
            await self.guard.failure(attempt, str(e.detail))
            raise
        await self.guard.success(attempt)
        return unlocked
