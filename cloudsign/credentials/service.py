"""Credentials: an owner's cloud key (made in the HSM, stored only as its
sealed blob), its certificate, and its destruction.

Creation needs the consents, a confirmed TOTP, an enrolled face (unless
`require_face` is off), a fresh code and the key password wrapped for a
one-time transport key; it commits the credential, its certificate and
their events in one transaction. HSM work happens before that transaction
and leaves nothing persistent in the HSM, so a failure at any step leaves
nothing half-created. Destruction wipes the blob and revokes the certificate
through the revocation service, in one transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from asn1crypto import x509
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from cloudsign.accounts import (
    ENROLMENT,
    AccountService,
    AfterCommit,
    DeviceProof,
    Owner,
    Possession,
)
from cloudsign.ca import (
    CertificateAuthority,
    Identity,
    certificates,
    issue_and_register,
    serial_hex,
)
from cloudsign.clock import Clock
from cloudsign.credentials.tables import credentials
from cloudsign.credentials.transport import TransportKeys
from cloudsign.errors import (
    ConflictError,
    FactorError,
    ForbiddenError,
    NotFoundError,
    PreconditionError,
    ValidationError,
)
from cloudsign.events import EventType, append_event
from cloudsign.faces import FaceService
from cloudsign.proofing import ProofingService
from cloudsign.settings import CredentialSettings
from cloudsign.status import RevocationService
from cloudsign.storage import Database
from hsm_bridge import (
    OWNER_KEY_ALGORITHMS,
    CreatedKey,
    KeyAlgorithm,
    KeyCustody,
    TransportKeyError,
    TransportMessage,
    UnlockedKey,
    UnsupportedAlgorithmError,
)

#: The revocation grounds of a certificate whose key was destroyed, or replaced.
DELETION_GROUND: Final = "key-deletion"
SUPERSEDED_GROUND: Final = "superseded"


def _owner_algorithm(name: str) -> KeyAlgorithm:
    try:
        algorithm = KeyAlgorithm.parse(name)
    except UnsupportedAlgorithmError as e:
        raise ValidationError(e.message, field="algorithm") from e
    if algorithm not in OWNER_KEY_ALGORITHMS:
        raise ValidationError(f"{algorithm.value} is not offered for owner keys", field="algorithm")
    return algorithm


@dataclass(frozen=True)
class Credential:
    """An owner's active credential with its key blob and certificate."""

    id: str
    owner_id: str
    algorithm: KeyAlgorithm
    blob: bytes
    certificate: x509.Certificate
    certificate_serial: str
    certificate_status: str

    def __repr__(self) -> str:
        return f"Credential(id={self.id!r}, algorithm={self.algorithm.value})"


@dataclass(frozen=True)
class IssuedCredential:
    id: str
    algorithm: KeyAlgorithm
    certificate: x509.Certificate
    serial: str


@dataclass(frozen=True)
class CredentialSummary:
    id: str
    status: str
    algorithm: str
    created_at: datetime
    deleted_at: datetime | None
    certificate_serial: str | None
    certificate_status: str | None
    certificate_not_after: datetime | None


class CredentialService:
    def __init__(
        self,
        db: Database,
        custody: KeyCustody,
        ca: CertificateAuthority,
        accounts: AccountService,
        faces: FaceService,
        transport: TransportKeys,
        revocation: RevocationService,
        proofing: ProofingService,
        settings: CredentialSettings,
        *,
        clock: Clock,
    ) -> None:
        self.db = db
        self.custody = custody
        self.ca = ca
        self.accounts = accounts
        self.faces = faces
        self.transport = transport
        self.revocation = revocation
        self.proofing = proofing
        self.settings = settings
        self.clock = clock

    # -- creation -----------------------------------------------------------

    async def create(
        self,
        owner: Owner,
        algorithm_name: str,
        message: TransportMessage,
        otp: Possession | None,
        face_challenge_id: str | None,
    ) -> IssuedCredential:
        """The key and certificate that finish an enrolment: needs the
        enrolment token of a redeemed proofing, the consents, a confirmed
        TOTP (and a fresh code), a face check passed just now against the
        proofed face, and the new key password wrapped for a transport key.
        A re-proofed owner's old key is destroyed (superseded) with it."""
        algorithm = _owner_algorithm(algorithm_name)
        if owner.scope != ENROLMENT or owner.proofing_id is None:
            raise ForbiddenError(
                "a new key needs a fresh identity proofing (activation), "
                "or the current key's factors (rekey)"
            )
        missing = await self.accounts.missing_consents(owner.id)
        if missing:
            raise PreconditionError(f"consent required first: {', '.join(missing)}")
        if not owner.totp_confirmed and not isinstance(otp, DeviceProof):
            raise PreconditionError("TOTP (or a bound device) must be set up first")
        if self.settings.require_face and not await self.faces.enrolled(owner.id):
            raise PreconditionError("the face must be enrolled first")
        await self.accounts.verify_possession(owner.id, otp, "enrol")
        if self.settings.require_face:
            await self.faces.consume(owner.id, face_challenge_id)
        new_key = await self._new_key(owner.id, algorithm, message)
        identity = await self.accounts.identity(owner.id)
        proofing_id = owner.proofing_id
        revoked: list[str] = []

        async def finish(conn: AsyncConnection, now: datetime) -> None:
            revoked.extend(await self._destroy_all(conn, owner.id, now, SUPERSEDED_GROUND))
            await self.accounts.activate(conn, owner.id)
            await self.accounts.upgrade_token(conn, owner.id, proofing_id)
            await self.proofing.consume(conn, proofing_id, owner.id)

        issued = await self._store(owner.id, identity, algorithm, new_key, finish)
        for serial in revoked:
            self.revocation.notify(serial)
        return issued

    async def rekey(
        self, owner: Owner, old: Credential, algorithm_name: str, message: TransportMessage
    ) -> IssuedCredential:
        """A new key (and certificate) replacing `old`, whose factors the
        caller has checked (cloudsign/lifecycle); the old one is destroyed
        and its certificate revoked as superseded."""
        algorithm = _owner_algorithm(algorithm_name)
        new_key = await self._new_key(owner.id, algorithm, message)
        identity = await self.accounts.identity(owner.id)
        revoked: list[str] = []

        async def finish(conn: AsyncConnection, now: datetime) -> None:
            serial = await self._destroy(conn, owner.id, old.id, now, SUPERSEDED_GROUND)
            if serial is None:
                raise ConflictError("the credential to replace is no longer active")
            revoked.append(serial)

        issued = await self._store(owner.id, identity, algorithm, new_key, finish)
        for serial in revoked:
            self.revocation.notify(serial)
        return issued

    async def change_password(
        self, owner: Owner, cred: Credential, unlocked: UnlockedKey, message: TransportMessage
    ) -> None:
        """The same key under a new password (the caller checked the
        factors, the current password among them): the HSM seals the opened
        key again under the new K_pw; the certificate stays."""
        await self.transport.consume(owner.id, "credential.create", message.transport_key_id)
        try:
            blob = await self.custody.rewrap_owner_key(unlocked, message)
        except TransportKeyError as e:
            raise FactorError("the wrapped new password could not be opened by the HSM") from e
        if not await self._replace_blob(
            cred, blob, EventType.FACTOR_CHANGE, {"factor": "password"}
        ):
            raise ConflictError("the credential is no longer active")

    async def store_rewrapped(self, cred: Credential, blob: bytes) -> None:
        """The owner's blob after the HSM moved the key to a new master key
        (`hsm_bridge.custody`, master key rotation): stored in place of the
        blob it was opened from, with a `key.rewrap` event. A blob changed
        meanwhile (a new password) is left alone; the next use moves it."""
        await self._replace_blob(
            cred, blob, EventType.KEY_REWRAP, {"reason": "master key rotation"}, unchanged=True
        )

    async def _replace_blob(
        self,
        cred: Credential,
        blob: bytes,
        event_type: EventType,
        data: dict[str, str],
        *,
        unchanged: bool = False,
    ) -> bool:
        """A new blob for an active credential (only if its blob is still
        `cred.blob`, with `unchanged`) and its event, in one transaction;
        False if nothing was replaced."""
        now = self.clock()
        where = [credentials.c.id == cred.id, credentials.c.status == "active"]
        if unchanged:
            where.append(credentials.c.key_blob == cred.blob)
        async with self.db.transaction() as conn:
            done = await conn.execute(update(credentials).where(*where).values(key_blob=blob))
            if done.rowcount != 1:
                return False
            await append_event(
                conn,
                event_type,
                owner_id=cred.owner_id,
                credential_id=cred.id,
                data=data,
                at=now,
            )
        return True

    async def _new_key(
        self, owner_id: str, algorithm: KeyAlgorithm, message: TransportMessage
    ) -> tuple[str, CreatedKey]:
        await self.transport.consume(owner_id, "credential.create", message.transport_key_id)
        credential_id = str(uuid.uuid4())
        try:
            return credential_id, await self.custody.create_owner_key(
                message, algorithm, credential_id
            )
        except TransportKeyError as e:
            raise FactorError("the wrapped key password could not be opened by the HSM") from e

    async def _store(
        self,
        owner_id: str,
        identity: Identity,
        algorithm: KeyAlgorithm,
        new_key: tuple[str, CreatedKey],
        finish: Callable[[AsyncConnection, datetime], Awaitable[None]],
    ) -> IssuedCredential:
        """The credential, its certificate and their events, with `finish`,
        in one transaction."""
        credential_id, created = new_key
        now = self.clock()
        try:
            async with self.db.transaction() as conn:
                await finish(conn, now)
                await conn.execute(
                    credentials.insert().values(
                        id=credential_id,
                        owner_id=owner_id,
                        status="active",
                        key_algorithm=algorithm.value,
                        public_key=created.public_key_info,
                        key_blob=created.blob,
                        created_at=now,
                    )
                )
                await append_event(
                    conn,
                    EventType.KEY_CREATE,
                    owner_id=owner_id,
                    credential_id=credential_id,
                    data={"algorithm": algorithm.value},
                    at=now,
                )
                cert = await issue_and_register(
                    self.ca,
                    conn,
                    identity,
                    created.public_key_info,
                    at=now,
                    owner_id=owner_id,
                    credential_id=credential_id,
                )
                serial = serial_hex(cert.serial_number)
                await conn.execute(
                    update(credentials)
                    .where(credentials.c.id == credential_id)
                    .values(certificate_serial=serial)
                )
        except IntegrityError as e:
            # The racing request won; this key existed only in HSM session memory.
            raise ConflictError("this owner already has an active credential") from e
        return IssuedCredential(credential_id, algorithm, cert, serial)

    async def _has_active(self, owner_id: str) -> bool:
        async with self.db.read() as conn:
            count = (
                await conn.execute(
                    select(func.count()).where(
                        credentials.c.owner_id == owner_id, credentials.c.status == "active"
                    )
                )
            ).scalar_one()
        return bool(count)

    # -- reading --------------------------------------------------------------

    async def active(self, owner_id: str, credential_id: str | None) -> Credential:
        """The owner's active credential; another owner's is simply not found."""
        if not credential_id:
            raise ValidationError("credentialID is required", field="credentialID")
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(
                        credentials.c.id,
                        credentials.c.owner_id,
                        credentials.c.key_algorithm,
                        credentials.c.key_blob,
                        certificates.c.serial,
                        certificates.c.der,
                        certificates.c.status,
                    )
                    .select_from(
                        credentials.join(
                            certificates, certificates.c.credential_id == credentials.c.id
                        )
                    )
                    .where(
                        credentials.c.id == credential_id,
                        credentials.c.owner_id == owner_id,
                        credentials.c.status == "active",
                    )
                )
            ).first()
        if row is None:
            raise NotFoundError("no such credential")
        return Credential(
            id=row[0],
            owner_id=row[1],
            algorithm=KeyAlgorithm(row[2]),
            blob=row[3],
            certificate_serial=row[4],
            certificate=x509.Certificate.load(row[5]),
            certificate_status=row[6],
        )

    async def owner_of(self, credential_id: str) -> str | None:
        """The owner of an active credential, None for any other id: for a
        client that names only the credential (CSC oauth2code, mobile_api.oauth)."""
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(credentials.c.owner_id).where(
                        credentials.c.id == credential_id, credentials.c.status == "active"
                    )
                )
            ).first()
        return None if row is None else str(row[0])

    async def active_ids(self, owner_id: str) -> list[str]:
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    select(credentials.c.id)
                    .where(credentials.c.owner_id == owner_id, credentials.c.status == "active")
                    .order_by(credentials.c.created_at)
                )
            ).all()
        return [r[0] for r in rows]

    async def summaries(self, owner_id: str) -> list[CredentialSummary]:
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    select(
                        credentials.c.id,
                        credentials.c.status,
                        credentials.c.key_algorithm,
                        credentials.c.created_at,
                        credentials.c.deleted_at,
                        certificates.c.serial,
                        certificates.c.status,
                        certificates.c.not_after,
                    )
                    .select_from(
                        credentials.outerjoin(
                            certificates, certificates.c.credential_id == credentials.c.id
                        )
                    )
                    .where(credentials.c.owner_id == owner_id)
                    .order_by(credentials.c.created_at)
                )
            ).all()
        return [CredentialSummary(*row) for row in rows]

    # -- destruction ----------------------------------------------------------

    async def delete(self, owner: Owner, cred: Credential) -> None:
        """Destroy the key (the blob is its only stored form) and revoke its
        certificate (the caller checked the factors). No recovery: a new key
        means a new certificate."""
        async with self.db.transaction() as conn:
            serial = await self._destroy(conn, owner.id, cred.id, self.clock(), DELETION_GROUND)
            if serial is None:
                raise NotFoundError("no active credential with this id")
        self.revocation.notify(serial)

    async def erase_owner(
        self, conn: AsyncConnection, owner_id: str, at: datetime
    ) -> AfterCommit | None:
        """Account deletion: every active key destroyed, its certificate
        revoked (accounts.AccountEraser)."""
        serials = await self._destroy_all(conn, owner_id, at, DELETION_GROUND)

        def announce() -> None:
            for serial in serials:
                self.revocation.notify(serial)

        return announce

    async def _destroy_all(
        self, conn: AsyncConnection, owner_id: str, at: datetime, ground: str
    ) -> list[str]:
        ids = (
            await conn.execute(
                select(credentials.c.id).where(
                    credentials.c.owner_id == owner_id, credentials.c.status == "active"
                )
            )
        ).all()
        return [s for (cid,) in ids if (s := await self._destroy(conn, owner_id, cid, at, ground))]

    async def _destroy(
        self, conn: AsyncConnection, owner_id: str, credential_id: str, at: datetime, ground: str
    ) -> str | None:
        """Inside the caller's transaction: wipe the blob, revoke the
        certificate (unless the owner revoked it before), log both; the
        certificate's serial, or None if the credential was not active."""
        serial = (
            await conn.execute(
                update(credentials)
                .where(credentials.c.id == credential_id, credentials.c.status == "active")
                .values(status="deleted", key_blob=None, deleted_at=at)
                .returning(credentials.c.certificate_serial)
            )
        ).scalar_one_or_none()
        if serial is None:
            return None
        await append_event(
            conn, EventType.KEY_DESTROY, owner_id=owner_id, credential_id=credential_id, at=at
        )
        await self.revocation.revoke_if_good_in(conn, serial, ground, f"owner:{owner_id}", at=at)
        return str(serial)
