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
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from asn1crypto import x509
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from cloudsign.accounts import AccountService, AfterCommit, Owner
from cloudsign.ca import CertificateAuthority, certificates, issue_and_register, serial_hex
from cloudsign.clock import Clock
from cloudsign.credentials.tables import credentials
from cloudsign.credentials.transport import TransportKeys
from cloudsign.errors import (
    ConflictError,
    FactorError,
    NotFoundError,
    PreconditionError,
    ValidationError,
)
from cloudsign.events import EventType, append_event
from cloudsign.faces import FaceService
from cloudsign.settings import CredentialSettings
from cloudsign.status import RevocationService
from cloudsign.storage import Database
from hsm_bridge import (
    OWNER_KEY_ALGORITHMS,
    KeyAlgorithm,
    KeyCustody,
    TransportKeyError,
    TransportMessage,
    UnsupportedAlgorithmError,
)

#: The revocation ground of a certificate whose key was destroyed.
DELETION_GROUND: Final = "key-deletion"


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
        self.settings = settings
        self.clock = clock

    # -- creation -----------------------------------------------------------

    async def create(
        self, owner: Owner, algorithm_name: str, message: TransportMessage, otp: str | None
    ) -> IssuedCredential:
        try:
            algorithm = KeyAlgorithm.parse(algorithm_name)
        except UnsupportedAlgorithmError as e:
            raise ValidationError(e.message, field="algorithm") from e
        if algorithm not in OWNER_KEY_ALGORITHMS:
            raise ValidationError(
                f"{algorithm.value} is not offered for owner keys", field="algorithm"
            )
        missing = await self.accounts.missing_consents(owner.id)
        if missing:
            raise PreconditionError(f"consent required first: {', '.join(missing)}")
        if not owner.totp_confirmed:
            raise PreconditionError("TOTP must be set up and confirmed first")
        if self.settings.require_face and not await self.faces.enrolled(owner.id):
            raise PreconditionError("the face must be enrolled first")
        if await self._has_active(owner.id):
            raise ConflictError("this owner already has an active credential")
        await self.accounts.verify_otp(owner.id, otp)
        await self.transport.consume(owner.id, "credential.create", message.transport_key_id)
        credential_id = str(uuid.uuid4())
        try:
            created = await self.custody.create_owner_key(message, algorithm, credential_id)
        except TransportKeyError as e:
            raise FactorError("the wrapped key password could not be opened by the HSM") from e
        identity = await self.accounts.identity(owner.id)
        now = self.clock()
        try:
            async with self.db.transaction() as conn:
                await conn.execute(
                    credentials.insert().values(
                        id=credential_id,
                        owner_id=owner.id,
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
                    owner_id=owner.id,
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
                    owner_id=owner.id,
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

    async def delete(self, owner: Owner, credential_id: str, otp: str | None) -> None:
        """Destroy the key (the blob is its only stored form) and revoke its
        certificate. No recovery: a new key means a new certificate."""
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(credentials.c.certificate_serial).where(
                        credentials.c.id == credential_id,
                        credentials.c.owner_id == owner.id,
                        credentials.c.status == "active",
                    )
                )
            ).first()
        if row is None:
            raise NotFoundError("no active credential with this id")
        await self.accounts.verify_otp(owner.id, otp)
        async with self.db.transaction() as conn:
            serial = await self._destroy(conn, owner.id, credential_id, self.clock())
            if serial is None:
                raise NotFoundError("no active credential with this id")
        self.revocation.notify(serial)

    async def erase_owner(
        self, conn: AsyncConnection, owner_id: str, at: datetime
    ) -> AfterCommit | None:
        """Account deletion: every active key destroyed, its certificate
        revoked (accounts.AccountEraser)."""
        ids = (
            await conn.execute(
                select(credentials.c.id).where(
                    credentials.c.owner_id == owner_id, credentials.c.status == "active"
                )
            )
        ).all()
        serials = [s for (cid,) in ids if (s := await self._destroy(conn, owner_id, cid, at))]

        def announce() -> None:
            for serial in serials:
                self.revocation.notify(serial)

        return announce

    async def _destroy(
        self, conn: AsyncConnection, owner_id: str, credential_id: str, at: datetime
    ) -> str | None:
        """Inside the caller's transaction: wipe the blob, revoke the
        certificate, log both; the revoked serial, or None if the credential
        was not active."""
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
        await self.revocation.revoke_in(conn, serial, DELETION_GROUND, f"owner:{owner_id}", at=at)
        return str(serial)
