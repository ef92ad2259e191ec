"""The three factors of every authorisation, and the lockout they share.

`FactorCheck.verify` checks a passed face check (biometric), a TOTP code
(possession) and the key password as K_pw wrapped for a one-time HSM key
(knowledge, verified by the HSM opening the key blob). A failure of any of
them is counted against the credential; `max_failed_attempts` failures in a
row lock it for `lockout` (`credential.lock` event), and a success resets
the count. The count is kept in `credential_lockouts` and incremented with
one atomic upsert, so parallel failures are all counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite

from cloudsign.accounts import AccountService
from cloudsign.clock import Clock
from cloudsign.credentials import Credential, TransportKeys
from cloudsign.errors import CloudsignError, ConflictError, FactorError, ValidationError
from cloudsign.events import EventType, NewEvent, append_events
from cloudsign.faces import FaceService
from cloudsign.settings import SigningSettings
from cloudsign.signing.tables import credential_lockouts
from cloudsign.storage import Database
from hsm_bridge import (
    KeyBlobError,
    KeyCustody,
    TransportKeyError,
    TransportMessage,
    UnlockedKey,
    WrongPasswordError,
)


class CredentialLockedError(CloudsignError):
    code = "credential_locked"
    status = 403
    title = "Credential locked"


@dataclass(frozen=True)
class LockDecision:
    """What one more failure does: the count to keep, and the lock to set."""

    failures: int
    locked_until: datetime | None


def after_failure(
    failures: int, *, max_failed: int, now: datetime, lockout: timedelta
) -> LockDecision:
    """`failures` counts this one. Reaching `max_failed` locks until
    now + lockout and starts the count again."""
    if failures >= max_failed:
        return LockDecision(0, now + lockout)
    return LockDecision(failures, None)


class Lockout:
    def __init__(self, db: Database, settings: SigningSettings, *, clock: Clock) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock

    async def locked_until(self, credential_id: str) -> datetime | None:
        """The end of the credential's lock, or None when it is not locked now."""
        async with self.db.read() as conn:
            until = (
                await conn.execute(
                    select(credential_lockouts.c.locked_until).where(
                        credential_lockouts.c.credential_id == credential_id
                    )
                )
            ).scalar_one_or_none()
        return until if until is not None and until > self.clock() else None

    async def check(self, cred: Credential) -> None:
        until = await self.locked_until(cred.id)
        if until is not None:
            raise CredentialLockedError(
                f"too many failed attempts; locked until {until.isoformat()}"
            )

    async def failure(self, cred: Credential, reason: str) -> None:
        now = self.clock()
        async with self.db.transaction() as conn:
            dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
            upsert = dialect.insert(credential_lockouts).values(
                credential_id=cred.id, failed_attempts=1
            )
            count = (
                await conn.execute(
                    upsert.on_conflict_do_update(
                        index_elements=[credential_lockouts.c.credential_id],
                        set_={"failed_attempts": credential_lockouts.c.failed_attempts + 1},
                    ).returning(credential_lockouts.c.failed_attempts)
                )
            ).scalar_one()
            decision = after_failure(
                count,
                max_failed=self.settings.max_failed_attempts,
                now=now,
                lockout=self.settings.lockout,
            )
            new = [
                NewEvent(
                    EventType.AUTH_FAILURE,
                    now,
                    cred.owner_id,
                    cred.id,
                    {"reason": reason, "failures": count},
                )
            ]
            if decision.locked_until is not None:
                await conn.execute(
                    update(credential_lockouts)
                    .where(credential_lockouts.c.credential_id == cred.id)
                    .values(failed_attempts=decision.failures, locked_until=decision.locked_until)
                )
                new.append(
                    NewEvent(
                        EventType.CREDENTIAL_LOCK,
                        now,
                        cred.owner_id,
                        cred.id,
                        {"until": decision.locked_until.isoformat(), "failures": count},
                    )
                )
            await append_events(conn, new)

    async def success(self, cred: Credential) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(
                update(credential_lockouts)
                .where(
                    credential_lockouts.c.credential_id == cred.id,
                    credential_lockouts.c.failed_attempts != 0,
                )
                .values(failed_attempts=0)
            )


class FactorCheck:
    def __init__(
        self,
        custody: KeyCustody,
        accounts: AccountService,
        faces: FaceService,
        transport: TransportKeys,
        lockout: Lockout,
    ) -> None:
        self.custody = custody
        self.accounts = accounts
        self.faces = faces
        self.transport = transport
        self.lockout = lockout

    async def verify(
        self,
        cred: Credential,
        password_key: TransportMessage | None,
        otp: str | None,
        face_challenge_id: str | None,
    ) -> UnlockedKey:
        """All three factors, or a counted failure. Returns the key with its
        password layer opened (still wrapped under the HSM master key)."""
        await self.lockout.check(cred)
        if password_key is None:
            raise ValidationError("the key password (PIN) is required", field="PIN")
        try:
            await self.faces.consume(cred.owner_id, face_challenge_id)
            await self.accounts.verify_otp(cred.owner_id, otp)
            try:
                await self.transport.consume(
                    cred.owner_id, "authorize", password_key.transport_key_id
                )
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
        except FactorError as e:
            await self.lockout.failure(cred, str(e.detail))
            raise
        except KeyBlobError as e:
            raise ConflictError("the stored key does not open; contact the centre") from e
        await self.lockout.success(cred)
        return unlocked
