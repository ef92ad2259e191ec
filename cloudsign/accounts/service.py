"""Accounts: owners, access tokens, consent, the TOTP factor and the end of
an account.

An account exists only for a proofed identity (cloudsign/proofing): a
redeemed proofing opens a *pending* account (or re-opens an active one) with
an *enrolment* token, good for the steps of enrolment only, until
`activation_ttl` lapses; the first credential makes it active. Logins
(two factors, cloudsign/lifecycle) get *full* tokens.

Every TOTP check is counted by the guard (per account and per address):
a handful of wrong codes locks the account's codes for a while (423).
Every change commits in one transaction with its audit events. Deleting an
account reaches into what other features keep about the owner (keys,
certificates, the face template) through the `AccountEraser`s the app
registers, inside the same transaction: accounts imports none of them.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Protocol

from sqlalchemy import and_, or_, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from cloudsign import totp
from cloudsign.accounts.consents import REQUIRED_KINDS, current_text
from cloudsign.accounts.possession import DeviceProof, DeviceVerifier, Possession
from cloudsign.accounts.tables import access_tokens, consents, owners
from cloudsign.ca import Identity
from cloudsign.clock import Clock
from cloudsign.errors import (
    ConflictError,
    FactorError,
    ForbiddenError,
    PreconditionError,
    UnauthorizedError,
    ValidationError,
)
from cloudsign.events import EventType, append_event
from cloudsign.guard import Guard, Limits
from cloudsign.settings import AccountSettings
from cloudsign.storage import Database
from cloudsign.web.client import client_address
from cloudsign.web.inputs import preview
from hsm_bridge import Sealer

ARGON2_SALT_BYTES: Final = 16
ARGON2_HASH_LEN: Final = 32
FULL: Final = "full"
ENROLMENT: Final = "enrolment"
#: Who may still use the service: proofed (pending) or enrolled (active).
LIVE_STATUSES: Final = ("pending", "active")

AfterCommit = Callable[[], None]


class AccountEraser(Protocol):
    """What another feature erases of an owner when the account is deleted."""

    async def erase_owner(
        self, conn: AsyncConnection, owner_id: str, at: datetime
    ) -> AfterCommit | None:
        """Inside the deletion's transaction; may return what to run once it
        has committed (e.g. telling the OCSP cache about revocations)."""


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Owner:
    """An owner as their access token presents them."""

    id: str
    kind: str
    iin: str
    full_name: str
    email: str
    status: str  # pending | active
    totp_confirmed: bool
    #: full (a login) or enrolment (a redeemed proofing)
    scope: str = FULL
    #: The proofing an enrolment token came from.
    proofing_id: str | None = None

    @classmethod
    def from_row(cls, row: RowMapping) -> Owner:
        return cls(
            id=row["id"],
            kind=row["kind"],
            iin=row["iin"],
            full_name=row["full_name"],
            email=row["email"],
            status=row["status"],
            totp_confirmed=row["totp_confirmed_at"] is not None,
            scope=row.get("scope", FULL),
            proofing_id=row.get("token_proofing_id"),
        )

    def require_full(self) -> None:
        """Refuse an enrolment token where only a login will do."""
        if self.scope != FULL:
            raise ForbiddenError("finish enrolment and log in first")


@dataclass(frozen=True)
class Session:
    owner_id: str
    access_token: str
    scope: str = FULL
    expires_at: datetime | None = None


@dataclass(frozen=True)
class AcceptedConsent:
    kind: str
    version: str
    language: str
    accepted_at: datetime


@dataclass(frozen=True)
class KeyParams:
    """Argon2id parameters the owner's device derives K_pw with (public)."""

    salt: bytes
    time_cost: int
    memory_kib: int
    parallelism: int
    hash_len: int = ARGON2_HASH_LEN


class AccountService:
    def __init__(
        self,
        db: Database,
        sealer: Sealer,
        settings: AccountSettings,
        guard: Guard,
        limits: Limits,
        *,
        clock: Clock,
        totp_clock: Clock | None = None,
    ) -> None:
        self.db = db
        self.sealer = sealer
        self.settings = settings
        self.guard = guard
        self.limits = limits
        self.clock = clock
        self.totp_clock = totp_clock or clock
        self._erasers: list[AccountEraser] = []
        self._devices: DeviceVerifier | None = None

    def use_devices(self, verifier: DeviceVerifier) -> None:
        """Accept bound devices' assertions as the possession factor."""
        self._devices = verifier

    def on_delete(self, eraser: AccountEraser) -> None:
        """Register what another feature erases with an account."""
        self._erasers.append(eraser)

    # -- accounts of proofed identities --------------------------------------------

    async def open_for_proofing(
        self,
        conn: AsyncConnection,
        identity: Identity,
        proofing_id: str,
        *,
        until: datetime,
    ) -> tuple[str, bool]:
        """Inside the proofing's transaction: the active account of this
        identity (re-proofing: its names and address become the proofing's),
        else a new pending one that lapses at `until`. Returns (owner id,
        whether it was already active)."""
        found = (
            await conn.execute(
                select(owners.c.id).where(
                    owners.c.kind == identity.kind,
                    owners.c.iin == identity.iin,
                    owners.c.bin == identity.bin,
                    owners.c.status == "active",
                )
            )
        ).first()
        now = self.clock()
        if found is not None:
            await conn.execute(
                update(owners)
                .where(owners.c.id == found[0])
                .values(
                    proofing_id=proofing_id,
                    surname=identity.surname,
                    given_name=identity.given_name,
                    full_name=identity.full_name,
                    email=identity.email,
                    organisation=identity.organisation,
                )
            )
            return str(found[0]), True
        owner_id = str(uuid.uuid4())
        s = self.settings
        await conn.execute(
            owners.insert().values(
                id=owner_id,
                kind=identity.kind,
                iin=identity.iin,
                bin=identity.bin,
                surname=identity.surname,
                given_name=identity.given_name,
                full_name=identity.full_name,
                email=identity.email,
                organisation=identity.organisation,
                status="pending",
                pending_until=until,
                proofing_id=proofing_id,
                created_at=now,
                argon2_salt=secrets.token_bytes(ARGON2_SALT_BYTES),
                argon2_time_cost=s.argon2_time_cost,
                argon2_memory_kib=s.argon2_memory_kib,
                argon2_parallelism=s.argon2_parallelism,
            )
        )
        await append_event(
            conn,
            EventType.ACCOUNT_CREATE,
            owner_id=owner_id,
            data={"proofing": proofing_id, "kind": identity.kind},
            at=now,
        )
        return owner_id, False

    async def activate(self, conn: AsyncConnection, owner_id: str) -> None:
        """Inside the first credential's transaction: the account is enrolled.
        Refused (conflict) when another account of the identity became
        active meanwhile."""
        try:
            await conn.execute(
                update(owners)
                .where(owners.c.id == owner_id, owners.c.status.in_(LIVE_STATUSES))
                .values(status="active", pending_until=None)
            )
        except IntegrityError as e:
            raise ConflictError("this identity already has an active account") from e

    async def issue_token(
        self,
        conn: AsyncConnection,
        owner_id: str,
        *,
        scope: str = FULL,
        proofing_id: str | None = None,
        ttl: timedelta | None = None,
    ) -> Session:
        token = secrets.token_urlsafe(32)
        now = self.clock()
        expires = now + (ttl or self.settings.access_token_ttl)
        await conn.execute(
            access_tokens.insert().values(
                token_hash=hash_token(token),
                owner_id=owner_id,
                created_at=now,
                expires_at=expires,
                scope=scope,
                proofing_id=proofing_id,
            )
        )
        return Session(owner_id, token, scope, expires)

    async def upgrade_token(self, conn: AsyncConnection, owner_id: str, proofing_id: str) -> None:
        """Inside the first credential's transaction: the enrolment tokens of
        this proofing become full ones (the owner just passed face, code and
        a new key password)."""
        await conn.execute(
            update(access_tokens)
            .where(
                access_tokens.c.owner_id == owner_id,
                access_tokens.c.proofing_id == proofing_id,
                access_tokens.c.scope == ENROLMENT,
            )
            .values(scope=FULL, expires_at=self.clock() + self.settings.access_token_ttl)
        )

    async def authenticate(self, token: str) -> Owner:
        now = self.clock()
        async with self.db.read() as conn:
            row = (
                (
                    await conn.execute(
                        select(
                            owners,
                            access_tokens.c.scope,
                            access_tokens.c.proofing_id.label("token_proofing_id"),
                        )
                        .join(access_tokens, access_tokens.c.owner_id == owners.c.id)
                        .where(
                            access_tokens.c.token_hash == hash_token(token),
                            access_tokens.c.revoked.is_(False),
                            access_tokens.c.expires_at > now,
                            or_(
                                owners.c.status == "active",
                                and_(owners.c.status == "pending", owners.c.pending_until > now),
                            ),
                        )
                    )
                )
                .mappings()
                .first()
            )
        if row is None:
            raise UnauthorizedError("access token unknown or expired")
        return Owner.from_row(row)

    async def revoke_token(self, token: str) -> None:
        """Log out: the token is refused from now on."""
        async with self.db.transaction() as conn:
            await conn.execute(
                update(access_tokens)
                .where(access_tokens.c.token_hash == hash_token(token))
                .values(revoked=True)
            )

    async def active_owner_by_iin(self, iin: str) -> str | None:
        """The active person account of an IIN (logins), or None."""
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(owners.c.id).where(
                        owners.c.iin == iin,
                        owners.c.kind == "person",
                        owners.c.status == "active",
                    )
                )
            ).first()
        return None if row is None else str(row[0])

    async def identity(self, owner_id: str) -> Identity:
        """Who the owner is, as their proofing established and their
        certificate names them."""
        async with self.db.read() as conn:
            row = (
                (await conn.execute(select(owners).where(owners.c.id == owner_id))).mappings().one()
            )
        return Identity(
            kind=row["kind"],
            iin=row["iin"],
            surname=row["surname"],
            given_name=row["given_name"],
            email=row["email"],
            bin=row["bin"],
            organisation=row["organisation"],
        )

    async def lapse_pending(self) -> int:
        """Unfinished enrolments past their time lapse (and stop being anyone's)."""
        now = self.clock()
        async with self.db.transaction() as conn:
            done = await conn.execute(
                update(owners)
                .where(owners.c.status == "pending", owners.c.pending_until <= now)
                .values(status="lapsed", totp_sealed=None)
            )
        return int(done.rowcount or 0)

    # -- consent ------------------------------------------------------------

    async def consents(self, owner_id: str) -> list[AcceptedConsent]:
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    select(
                        consents.c.kind,
                        consents.c.text_version,
                        consents.c.language,
                        consents.c.accepted_at,
                    ).where(consents.c.owner_id == owner_id)
                )
            ).all()
        return [AcceptedConsent(kind, version, lang, at) for kind, version, lang, at in rows]

    async def record_consent(
        self, owner: Owner, kind: str, version: str, sha256: str, language: str = "en"
    ) -> None:
        text = current_text(kind, language)
        if text is None:
            raise ValidationError(
                f"unknown consent kind or language {preview(kind)}/{preview(language)}",
                field="kind",
            )
        if version != text.version or sha256 != text.sha256:
            raise ConflictError("the consent text shown is not the current version")
        now = self.clock()
        try:
            async with self.db.transaction() as conn:
                await conn.execute(
                    consents.insert().values(
                        id=str(uuid.uuid4()),
                        owner_id=owner.id,
                        kind=kind,
                        text_version=version,
                        text_sha256=sha256,
                        language=language,
                        accepted_at=now,
                    )
                )
                await append_event(
                    conn,
                    EventType.CONSENT_RECORD,
                    owner_id=owner.id,
                    data={
                        "kind": kind,
                        "version": version,
                        "language": language,
                        "text_sha256": sha256,
                    },
                    at=now,
                )
        except IntegrityError:
            return  # already recorded: accepting twice changes nothing

    async def missing_consents(self, owner_id: str) -> list[str]:
        """The consent kinds whose current version the owner has not accepted."""
        have = {(c.kind, c.version) for c in await self.consents(owner_id)}
        missing = []
        for kind in REQUIRED_KINDS:
            text = current_text(kind)
            if text is None or (kind, text.version) not in have:
                missing.append(kind)
        return missing

    # -- TOTP ---------------------------------------------------------------

    async def begin_totp(self, owner: Owner) -> str:
        """A fresh seed, sealed by the HSM; returns the otpauth:// URI once.
        Only while enrolling: a confirmed factor is replaced only through a
        proofing (enrolment token) or with the other factors (lifecycle)."""
        if owner.scope != ENROLMENT:
            raise ConflictError(
                "TOTP is set up while enrolling; replace it with the face and the key "
                "password (POST /api/v1/me/totp/reset)"
            )
        return await self.reset_totp(owner.id, owner.iin)

    async def reset_totp(self, owner_id: str, label: str) -> str:
        """A new, unconfirmed seed (the caller has checked who may)."""
        seed = totp.new_seed()
        sealed = await self.sealer.seal("totp", seed.encode(), owner_id.encode())
        async with self.db.transaction() as conn:
            await conn.execute(
                update(owners)
                .where(owners.c.id == owner_id)
                .values(totp_sealed=sealed, totp_confirmed_at=None, totp_last_step=None)
            )
        return totp.provisioning_uri(
            seed,
            name=label,
            issuer=self.settings.totp_issuer,
            period=self.settings.totp_period_seconds,
        )

    async def confirm_totp(self, owner: Owner, otp: str | None) -> None:
        await self.verify_otp(owner.id, otp, require_confirmed=False)
        now = self.clock()
        async with self.db.transaction() as conn:
            await conn.execute(
                update(owners).where(owners.c.id == owner.id).values(totp_confirmed_at=now)
            )
            await append_event(
                conn, EventType.FACTOR_CHANGE, owner_id=owner.id, data={"factor": "totp"}, at=now
            )

    async def verify_possession(
        self, owner_id: str, possession: Possession | None, purpose: str
    ) -> str:
        """The possession factor: a TOTP code, or an assertion of a device
        bound to the account over a challenge issued for `purpose`. Returns
        the factor's name (`otp` or `device`)."""
        if isinstance(possession, DeviceProof):
            if self._devices is None:
                raise FactorError("this service binds no devices")
            await self._devices.verify(owner_id, possession, purpose)
            return "device"
        if (
            possession is None
            and self._devices is not None
            and await self._devices.has_devices(owner_id)
            and not await self._has_totp(owner_id)
        ):
            raise FactorError("an assertion of a bound device is required (device)")
        await self.verify_otp(owner_id, possession)
        return "otp"

    async def device_challenge(
        self, owner_id: str | None, purpose: str
    ) -> tuple[str, bytes] | None:
        """A one-time challenge for a device assertion, if devices are bound
        through this service (a decoy, alike in form, for no owner)."""
        if self._devices is None:
            return None
        return await self._devices.issue_challenge(owner_id, purpose)

    async def _has_totp(self, owner_id: str) -> bool:
        async with self.db.read() as conn:
            confirmed = (
                await conn.execute(
                    select(owners.c.totp_confirmed_at).where(owners.c.id == owner_id)
                )
            ).scalar()
        return confirmed is not None

    async def verify_otp(
        self, owner_id: str, otp: object, *, require_confirmed: bool = True
    ) -> None:
        """Accept a TOTP code once: the matched time step must be newer than
        the last accepted one, recorded with a compare-and-set. Counted and
        limited per account and per address."""
        if not totp.well_formed(otp):
            raise FactorError("OTP must be 6 digits")
        assert isinstance(otp, str)
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(
                        owners.c.totp_sealed, owners.c.totp_confirmed_at, owners.c.totp_last_step
                    ).where(owners.c.id == owner_id)
                )
            ).first()
        if row is None or row[0] is None:
            raise PreconditionError("TOTP is not set up")
        if require_confirmed and row[1] is None:
            raise PreconditionError("TOTP is not confirmed")
        attempt = await self.guard.attempt(
            [(self.limits.otp, owner_id), (self.limits.address, client_address())],
            factor="otp",
            owner_id=owner_id,
        )
        seed = (await self.sealer.unseal("totp", row[0], owner_id.encode())).decode()
        matched = totp.matching_step(
            seed,
            otp,
            self.totp_clock(),
            period=self.settings.totp_period_seconds,
            window=self.settings.totp_valid_window,
        )
        if matched is None:
            await self.guard.failure(attempt, "wrong code")
            raise FactorError("OTP is wrong")
        async with self.db.transaction() as conn:
            result = await conn.execute(
                update(owners)
                .where(
                    owners.c.id == owner_id,
                    or_(owners.c.totp_last_step.is_(None), owners.c.totp_last_step < matched),
                )
                .values(totp_last_step=matched)
            )
        if result.rowcount != 1:
            await self.guard.failure(attempt, "code already used")
            raise FactorError("OTP was already used")
        await self.guard.success(attempt)

    # -- key password parameters ----------------------------------------------

    async def key_params(self, owner_id: str) -> KeyParams:
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(
                        owners.c.argon2_salt,
                        owners.c.argon2_time_cost,
                        owners.c.argon2_memory_kib,
                        owners.c.argon2_parallelism,
                    ).where(owners.c.id == owner_id)
                )
            ).one()
        return KeyParams(row[0], row[1], row[2], row[3])

    def decoy_key_params(self, salt: bytes) -> KeyParams:
        """Parameters for an IIN with no account (the caller derives a salt
        stable per IIN), so a login challenge looks the same whether or not
        the IIN is a customer."""
        s = self.settings
        return KeyParams(
            salt[:ARGON2_SALT_BYTES], s.argon2_time_cost, s.argon2_memory_kib, s.argon2_parallelism
        )

    # -- deletion -------------------------------------------------------------

    async def delete_account(self, owner: Owner) -> None:
        """Withdrawal of consent (the caller has checked the factors): every
        feature erases what it keeps of the owner (keys destroyed,
        certificates revoked, the face template wiped), the TOTP seed is
        wiped and the access tokens revoked, in one transaction. The audit
        trail and the cabinet stay (rules 12 and 14)."""
        now = self.clock()
        after: list[AfterCommit] = []
        async with self.db.transaction() as conn:
            for eraser in self._erasers:
                done = await eraser.erase_owner(conn, owner.id, now)
                if done is not None:
                    after.append(done)
            await conn.execute(
                update(owners)
                .where(owners.c.id == owner.id)
                .values(status="deleted", deleted_at=now, totp_sealed=None, pending_until=None)
            )
            await conn.execute(
                update(access_tokens)
                .where(access_tokens.c.owner_id == owner.id)
                .values(revoked=True)
            )
            await append_event(conn, EventType.ACCOUNT_DELETE, owner_id=owner.id, at=now)
        for done in after:
            done()
