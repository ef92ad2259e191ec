"""Accounts: owners, access tokens, login, consent, the TOTP factor and the
deletion of an account.

Every change commits in one transaction with its audit events. Deleting an
account reaches into what other features keep about the owner (keys,
certificates, the face template) through the `AccountEraser`s the app
registers, inside the same transaction: accounts imports none of them.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Protocol

import pyotp
from sqlalchemy import or_, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from cloudsign.accounts.consents import REQUIRED_KINDS, current_text
from cloudsign.accounts.tables import access_tokens, consents, owners
from cloudsign.ca import Identity
from cloudsign.clock import Clock
from cloudsign.errors import (
    ConflictError,
    FactorError,
    PreconditionError,
    UnauthorizedError,
    ValidationError,
)
from cloudsign.events import EventType, append_event
from cloudsign.settings import AccountSettings
from cloudsign.storage import Database
from cloudsign.web.inputs import preview
from hsm_bridge import Sealer

TOTP_SEED_BYTES: Final = 20
ARGON2_SALT_BYTES: Final = 16
ARGON2_HASH_LEN: Final = 32
#: ASCII digits only: `str.isdigit()` also takes '²' and '١', which
#: `compare_digest` then refuses with a TypeError.
OTP_FORMAT: Final = re.compile(r"[0-9]{6}")

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
    id: str
    kind: str
    iin: str
    full_name: str
    email: str
    totp_confirmed: bool

    @classmethod
    def from_row(cls, row: RowMapping) -> Owner:
        return cls(
            id=row["id"],
            kind=row["kind"],
            iin=row["iin"],
            full_name=row["full_name"],
            email=row["email"],
            totp_confirmed=row["totp_confirmed_at"] is not None,
        )


@dataclass(frozen=True)
class Session:
    owner_id: str
    access_token: str


@dataclass(frozen=True)
class AcceptedConsent:
    kind: str
    version: str
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
        *,
        clock: Clock,
        totp_clock: Clock | None = None,
    ) -> None:
        self.db = db
        self.sealer = sealer
        self.settings = settings
        self.clock = clock
        self.totp_clock = totp_clock or clock
        self._erasers: list[AccountEraser] = []

    def on_delete(self, eraser: AccountEraser) -> None:
        """Register what another feature erases with an account."""
        self._erasers.append(eraser)

    # -- accounts and access tokens -----------------------------------------

    async def create_owner(self, identity: Identity) -> Session:
        owner_id = str(uuid.uuid4())
        s = self.settings
        try:
            async with self.db.transaction() as conn:
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
                        created_at=self.clock(),
                        argon2_salt=secrets.token_bytes(ARGON2_SALT_BYTES),
                        argon2_time_cost=s.argon2_time_cost,
                        argon2_memory_kib=s.argon2_memory_kib,
                        argon2_parallelism=s.argon2_parallelism,
                    )
                )
                token = await self._issue_token(conn, owner_id)
        except IntegrityError as e:
            raise ConflictError("an account with this identity already exists") from e
        return Session(owner_id, token)

    async def _issue_token(self, conn: AsyncConnection, owner_id: str) -> str:
        token = secrets.token_urlsafe(32)
        now = self.clock()
        await conn.execute(
            access_tokens.insert().values(
                token_hash=hash_token(token),
                owner_id=owner_id,
                created_at=now,
                expires_at=now + self.settings.access_token_ttl,
            )
        )
        return token

    async def authenticate(self, token: str) -> Owner:
        async with self.db.read() as conn:
            row = (
                (
                    await conn.execute(
                        select(owners)
                        .join(access_tokens, access_tokens.c.owner_id == owners.c.id)
                        .where(
                            access_tokens.c.token_hash == hash_token(token),
                            access_tokens.c.revoked.is_(False),
                            access_tokens.c.expires_at > self.clock(),
                            owners.c.status == "active",
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

    async def login(self, iin: str, otp: str) -> Session:
        """A new access token for an enrolled owner: IIN plus a fresh TOTP code."""
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(owners.c.id).where(
                        owners.c.iin == iin,
                        owners.c.kind == "person",
                        owners.c.status == "active",
                        owners.c.totp_confirmed_at.is_not(None),
                    )
                )
            ).first()
        if row is None:
            raise UnauthorizedError("unknown IIN or OTP")
        owner_id: str = row[0]
        try:
            await self.verify_otp(owner_id, otp)
        except FactorError as e:
            raise UnauthorizedError("unknown IIN or OTP") from e
        async with self.db.transaction() as conn:
            return Session(owner_id, await self._issue_token(conn, owner_id))

    async def identity(self, owner_id: str) -> Identity:
        """Who the owner is, as their certificate names them."""
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

    # -- consent ------------------------------------------------------------

    async def consents(self, owner_id: str) -> list[AcceptedConsent]:
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    select(consents.c.kind, consents.c.text_version, consents.c.accepted_at).where(
                        consents.c.owner_id == owner_id
                    )
                )
            ).all()
        return [AcceptedConsent(kind, version, at) for kind, version, at in rows]

    async def record_consent(self, owner: Owner, kind: str, version: str, sha256: str) -> None:
        text = current_text(kind)
        if text is None:
            raise ValidationError(f"unknown consent kind {preview(kind)}", field="kind")
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
                        accepted_at=now,
                    )
                )
                await append_event(
                    conn,
                    EventType.CONSENT_RECORD,
                    owner_id=owner.id,
                    data={"kind": kind, "version": version, "text_sha256": sha256},
                    at=now,
                )
        except IntegrityError:
            return  # already recorded: accepting twice changes nothing

    async def missing_consents(self, owner_id: str) -> list[str]:
        """The consent kinds whose current text the owner has not accepted."""
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
        Refused once confirmed: a second factor is not silently replaced."""
        if owner.totp_confirmed:
            raise ConflictError("TOTP is already set up for this account")
        seed = base64.b32encode(secrets.token_bytes(TOTP_SEED_BYTES)).decode()
        sealed = await self.sealer.seal("totp", seed.encode(), owner.id.encode())
        async with self.db.transaction() as conn:
            await conn.execute(
                update(owners)
                .where(owners.c.id == owner.id, owners.c.totp_confirmed_at.is_(None))
                .values(totp_sealed=sealed, totp_last_step=None)
            )
        totp = pyotp.TOTP(seed, interval=self.settings.totp_period_seconds)
        return totp.provisioning_uri(name=owner.iin, issuer_name=self.settings.totp_issuer)

    async def confirm_totp(self, owner: Owner, otp: str | None) -> None:
        await self.verify_otp(owner.id, otp, require_confirmed=False)
        async with self.db.transaction() as conn:
            await conn.execute(
                update(owners).where(owners.c.id == owner.id).values(totp_confirmed_at=self.clock())
            )

    async def verify_otp(
        self, owner_id: str, otp: object, *, require_confirmed: bool = True
    ) -> None:
        """Accept a TOTP code once: the matched time step must be newer than
        the last accepted one, recorded with a compare-and-set."""
        if not isinstance(otp, str) or not OTP_FORMAT.fullmatch(otp):
            raise FactorError("OTP must be 6 digits")
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
        seed = (await self.sealer.unseal("totp", row[0], owner_id.encode())).decode()
        matched = matching_step(
            pyotp.TOTP(seed, interval=self.settings.totp_period_seconds),
            otp,
            self.totp_clock(),
            self.settings.totp_valid_window,
        )
        if matched is None:
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
            raise FactorError("OTP was already used")

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

    # -- deletion -------------------------------------------------------------

    async def delete_account(self, owner: Owner, otp: str | None) -> None:
        """Withdrawal of consent: every feature erases what it keeps of the
        owner (keys destroyed, certificates revoked, the face template
        wiped), the TOTP seed is wiped and the access tokens revoked, in one
        transaction. The audit trail and the cabinet stay (rules 12 and 14)."""
        await self.verify_otp(owner.id, otp)
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
                .values(status="deleted", deleted_at=now, totp_sealed=None)
            )
            await conn.execute(
                update(access_tokens)
                .where(access_tokens.c.owner_id == owner.id)
                .values(revoked=True)
            )
            await append_event(conn, EventType.ACCOUNT_DELETE, owner_id=owner.id, at=now)
        for done in after:
            done()


def matching_step(totp: pyotp.TOTP, otp: str, now: datetime, window: int) -> int | None:
    """The time step within `window` steps of `now` whose code is `otp`."""
    current = totp.timecode(now)
    period = totp.interval
    steps: Sequence[int] = range(-window, window + 1)
    for off in steps:
        at = datetime.fromtimestamp(now.timestamp() + off * period, tz=now.tzinfo)
        if secrets.compare_digest(totp.at(at), otp):
            return current + off
    return None
