"""Every path that changes who can sign, held to what signing requires.

Signing needs a face check passed just now, a TOTP code and the key
password. So do these, here, in one place:

- **logging in** to the cabinet: the IIN, a TOTP code and a password proof
  made on the device (the HSM opens the key blob); the login challenge
  answers the same whether or not the IIN is a customer;
- **deleting the key** or **the account**;
- **replacing the face template** (a live match against the current one,
  then the new images);
- **a new password** for the same key, or **a new key** (the old one is
  revoked as superseded);
- **replacing the TOTP factor**: the face and the password (the code is
  what is being replaced).

A TOTP code alone changes nothing. Every factor is counted by the guard;
every change is an audit event. A lost password is not recovered (rule 11):
a fresh identity proofing (cloudsign/proofing) opens an enrolment for a new
key instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from cloudsign.accounts import AccountService, KeyParams, Owner, Possession, Session
from cloudsign.clock import Clock
from cloudsign.credentials import (
    Credential,
    CredentialService,
    IssuedCredential,
    TransportKey,
    TransportKeys,
)
from cloudsign.errors import FactorError, PreconditionError, UnauthorizedError
from cloudsign.events import EventType, append_event
from cloudsign.faces import FaceEnrolment, FaceService
from cloudsign.guard import Guard, Limits
from cloudsign.signing import FactorCheck
from cloudsign.storage import Database
from cloudsign.web.client import client_address
from hsm_bridge import KeyedHasher, TransportMessage

DECOY_LABEL = b"cloudsign/decoy-salt\x00"


@dataclass(frozen=True)
class Factors:
    """What a change presents: a passed face check, a code, the password."""

    face_challenge_id: str | None
    otp: Possession | None
    password_key: TransportMessage | None

    def __repr__(self) -> str:
        return f"Factors(face_challenge_id={self.face_challenge_id!r})"


@dataclass(frozen=True)
class LoginChallenge:
    transport_key: TransportKey
    key_params: KeyParams
    #: A one-time challenge for a bound device's assertion (id, bytes);
    #: issued for every IIN, known or not, so it reveals nothing.
    device_challenge: tuple[str, bytes] | None = None


class LifecycleService:
    def __init__(
        self,
        db: Database,
        accounts: AccountService,
        credentials: CredentialService,
        faces: FaceService,
        factors: FactorCheck,
        transport: TransportKeys,
        hasher: KeyedHasher,
        guard: Guard,
        limits: Limits,
        *,
        clock: Clock,
    ) -> None:
        self.db = db
        self.accounts = accounts
        self.credentials = credentials
        self.faces = faces
        self.factors = factors
        self.transport = transport
        self.hasher = hasher
        self.guard = guard
        self.limits = limits
        self.clock = clock

    # -- logging in ------------------------------------------------------------------

    async def login_challenge(self, iin: str) -> LoginChallenge:
        """A one-time HSM key and the Argon2id parameters for this IIN's key
        password; for an IIN with no account, stable decoy parameters."""
        await self.guard.counted(
            [(self.limits.anonymous_keys, client_address())], factor="login-challenge"
        )
        owner_id = await self.accounts.active_owner_by_iin(iin)
        if owner_id is not None:
            params = await self.accounts.key_params(owner_id)
        else:
            salt = await self.hasher.hmac_sha256("audit-owner", DECOY_LABEL + iin.encode())
            params = self.accounts.decoy_key_params(salt)
        key = await self.transport.issue(owner_id, "login")
        device = await self.accounts.device_challenge(owner_id, "login")
        return LoginChallenge(key, params, device)

    async def login(self, iin: str, otp: Possession, password_key: TransportMessage) -> Session:
        """A full session: the IIN's TOTP code (or a bound device's
        assertion) and its key password."""
        attempt = await self.guard.attempt(
            [(self.limits.login, iin), (self.limits.address, client_address())], factor="login"
        )
        owner_id = await self.accounts.active_owner_by_iin(iin)
        try:
            if owner_id is None:
                raise FactorError("no such account")
            await self.accounts.verify_possession(owner_id, otp, "login")
            cred = await self._only_credential(owner_id)
            await self.factors.password(cred, password_key, purpose="login")
        except (FactorError, PreconditionError) as e:
            await self.guard.failure(attempt, e.detail)
            raise UnauthorizedError("unknown IIN, wrong code or wrong password") from e
        await self.guard.success(attempt)
        async with self.db.transaction() as conn:
            return await self.accounts.issue_token(conn, owner_id)

    async def _only_credential(self, owner_id: str) -> Credential:
        ids = await self.credentials.active_ids(owner_id)
        if not ids:
            raise PreconditionError("no active key: enrol again through identity proofing")
        return await self.credentials.active(owner_id, ids[0])

    # -- changes that need every factor ----------------------------------------------

    async def delete_account(self, owner: Owner, factors: Factors) -> None:
        """Withdrawal of consent. With a key: all three factors. An
        unfinished enrolment (no key yet): a face check passed just now."""
        ids = await self.credentials.active_ids(owner.id)
        if ids:
            cred = await self.credentials.active(owner.id, ids[0])
            await self.factors.verify(
                cred, factors.password_key, factors.otp, factors.face_challenge_id
            )
        else:
            await self.faces.consume(owner.id, factors.face_challenge_id)
        await self.accounts.delete_account(owner)

    async def delete_credential(self, owner: Owner, credential_id: str, factors: Factors) -> None:
        owner.require_full()
        cred = await self.credentials.active(owner.id, credential_id)
        await self.factors.verify(
            cred, factors.password_key, factors.otp, factors.face_challenge_id
        )
        await self.credentials.delete(owner, cred)

    async def replace_face(
        self, owner: Owner, images: list[bytes], factors: Factors
    ) -> FaceEnrolment:
        """A fresher template of the same face, from `images`: the face check
        matched the *current* template, and the images match it too (checked
        first, so a refused image spends no factor)."""
        owner.require_full()
        cred = await self._only_credential(owner.id)
        template = await self.faces.replacement(owner.id, images)
        await self.factors.verify(
            cred, factors.password_key, factors.otp, factors.face_challenge_id
        )
        return await self.faces.replace(owner.id, template)

    async def change_password(
        self, owner: Owner, credential_id: str, factors: Factors, new_password_key: TransportMessage
    ) -> None:
        owner.require_full()
        cred = await self.credentials.active(owner.id, credential_id)
        unlocked = await self.factors.verify(
            cred, factors.password_key, factors.otp, factors.face_challenge_id
        )
        await self.credentials.change_password(owner, cred, unlocked, new_password_key)

    async def rekey(
        self,
        owner: Owner,
        credential_id: str,
        factors: Factors,
        new_password_key: TransportMessage,
        algorithm: str,
    ) -> IssuedCredential:
        owner.require_full()
        cred = await self.credentials.active(owner.id, credential_id)
        await self.factors.verify(
            cred, factors.password_key, factors.otp, factors.face_challenge_id
        )
        return await self.credentials.rekey(owner, cred, algorithm, new_password_key)

    async def reset_totp(self, owner: Owner, factors: Factors) -> str:
        """A new TOTP seed (to confirm with its first code): the face and the
        key password, since the code is what is being replaced."""
        owner.require_full()
        cred = await self._only_credential(owner.id)
        await self.factors.verify(
            cred, factors.password_key, None, factors.face_challenge_id, require_otp=False
        )
        uri = await self.accounts.reset_totp(owner.id, owner.iin)
        async with self.db.transaction() as conn:
            await append_event(
                conn,
                EventType.FACTOR_CHANGE,
                owner_id=owner.id,
                data={"factor": "totp", "step": "reset"},
                at=self.clock(),
            )
        return uri
