"""Identity proofing (rule 6): no account, and so no certificate, without it.

Two ways, each an `identity.proof` event saying who proofed whom and how:

- **At the desk.** A registration officer, signed in with their own
  account, captures the citizen's live face (the same liveness challenge as
  citizens pass) and records the identity from the document they checked,
  then approves: the citizen gets a one-time activation code (and QR),
  valid `activation_ttl`, which their device redeems to enrol.
- **Remotely**, when a registry is configured: the applicant names their
  IIN, passes a liveness challenge, and the face is matched against the
  national registry's photo, fetched with a signed, fresh answer
  (registry.py). The photo is the registry's, never the applicant's.

Either way the identity in the account (and the certificate) comes from the
proofing, not from what an applicant typed, and the reference face is the
one captured live at the desk or the registry's. Redeeming a proofing opens
a pending account (or re-opens the active one: re-proofing after a lost
password) with an enrolment token; unredeemed codes and unfinished
enrolments lapse and free the IIN.

Starting a remote proofing answers the same whatever the IIN: whether the
registry knows it, or the centre already does, shows only after the face
passed.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import select, update

from biometrics import Challenge, FaceTemplate
from cloudsign.accounts import ENROLMENT, AccountService, Session
from cloudsign.ca import Identity
from cloudsign.clock import Clock
from cloudsign.errors import (
    CloudsignError,
    ConflictError,
    NotFoundError,
    ServiceUnavailableError,
    UnauthorizedError,
)
from cloudsign.events import EventType, NewEvent, append_events
from cloudsign.faces import FaceService
from cloudsign.guard import Guard, Limits
from cloudsign.operators import Operator, OperatorService, Role
from cloudsign.proofing.registry import IdentityRegistry
from cloudsign.proofing.tables import face_captures, proofings
from cloudsign.settings import ProofingSettings
from cloudsign.storage import Database
from cloudsign.web.client import client_address
from hsm_bridge import Sealer

#: The identity documents a registration officer checks.
DOCUMENT_TYPES: Final = ("id_card", "passport", "residence_permit")
#: 20 characters of base32 (100 bits), shown in groups of four.
ACTIVATION_ALPHABET: Final = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
ACTIVATION_LENGTH: Final = 20
TEMPLATE_AAD: Final = b"cloudsign/proofing-template/v1\x00"
#: A template nobody matches (every face is far from the origin).
NOBODY: Final = FaceTemplate([0.0] * 128, 1)
#: `proofings.template_sealed` once the face moved to the account, or lapsed
#: (the column is NOT NULL).
FORGOTTEN: Final = b""


class ProofingRefusedError(CloudsignError):
    """The same answer for every reason a remote proofing fails: unknown to
    the registry, a face that does not match, a burst that is not live."""

    code = "proofing_refused"
    status = 403
    title = "Identity not confirmed"


@dataclass(frozen=True)
class Capture:
    id: str
    challenge: Challenge


@dataclass(frozen=True)
class DeskProofing:
    id: str
    activation_code: str  # shown once to the citizen; only its hash is stored
    expires_at: datetime

    def __repr__(self) -> str:
        return f"DeskProofing(id={self.id!r})"


def normalise_code(code: str) -> str:
    return "".join(c for c in code.upper() if c.isalnum())


def _hash(code: str) -> str:
    return hashlib.sha256(b"cloudsign/activation\x00" + normalise_code(code).encode()).hexdigest()


def _new_code() -> str:
    raw = "".join(secrets.choice(ACTIVATION_ALPHABET) for _ in range(ACTIVATION_LENGTH))
    return "-".join(raw[i : i + 4] for i in range(0, ACTIVATION_LENGTH, 4))


class ProofingService:
    def __init__(
        self,
        db: Database,
        sealer: Sealer,
        faces: FaceService,
        accounts: AccountService,
        guard: Guard,
        limits: Limits,
        settings: ProofingSettings,
        registry: IdentityRegistry | None,
        *,
        clock: Clock,
    ) -> None:
        self.db = db
        self.sealer = sealer
        self.faces = faces
        self.accounts = accounts
        self.guard = guard
        self.limits = limits
        self.settings = settings
        self.registry = registry
        self.clock = clock

    @property
    def remote_offered(self) -> bool:
        return self.registry is not None

    # -- captures ---------------------------------------------------------------

    async def _new_capture(self, **values: Any) -> Capture:
        challenge = self.faces.fresh_challenge()
        capture_id = str(uuid.uuid4())
        async with self.db.transaction() as conn:
            await conn.execute(
                face_captures.insert().values(
                    id=capture_id,
                    challenge=challenge.to_dict(),
                    status="pending",
                    created_at=challenge.issued_at,
                    expires_at=challenge.expires_at,
                    **values,
                )
            )
        return Capture(capture_id, challenge)

    async def _claim_capture(self, capture_id: str, **where: Any) -> Any:
        """The capture's row, moved from pending to checking once."""
        now = self.clock()
        async with self.db.transaction() as conn:
            row = (
                await conn.execute(
                    select(face_captures).where(
                        face_captures.c.id == capture_id,
                        *(getattr(face_captures.c, k) == v for k, v in where.items()),
                    )
                )
            ).first()
            if row is None:
                raise NotFoundError("no such capture")
            claimed = await conn.execute(
                update(face_captures)
                .where(
                    face_captures.c.id == capture_id,
                    face_captures.c.status == "pending",
                    face_captures.c.expires_at > now,
                )
                .values(status="checking")
            )
            if claimed.rowcount != 1:
                raise ConflictError("capture already used or expired; start a new one")
        return row

    async def _set_capture(self, capture_id: str, **values: Any) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(
                update(face_captures).where(face_captures.c.id == capture_id).values(**values)
            )

    # -- at the desk ------------------------------------------------------------

    async def desk_challenge(self, officer: Operator) -> Capture:
        OperatorService.require(officer, Role.REGISTRATION)
        return await self._new_capture(purpose="desk", operator_id=officer.id)

    async def desk_capture(self, officer: Operator, capture_id: str, frames: list[bytes]) -> None:
        """The citizen's live face, captured by this officer."""
        OperatorService.require(officer, Role.REGISTRATION)
        row = await self._claim_capture(capture_id, purpose="desk", operator_id=officer.id)
        try:
            template = await self.faces.capture_live(frames, Challenge.from_dict(row.challenge))
        except CloudsignError:
            await self._set_capture(capture_id, status="refused")
            raise
        sealed = await self._seal(capture_id, template)
        await self._set_capture(capture_id, status="captured", template_sealed=sealed)

    async def take_desk_capture(self, officer: Operator, capture_id: str) -> FaceTemplate:
        """Spend this officer's passed capture for another desk action (a
        lost phone's revocation): the live face, once."""
        OperatorService.require(officer, Role.REGISTRATION)
        async with self.db.transaction() as conn:
            return await self._spend_desk_capture(conn, officer, capture_id)

    async def _spend_desk_capture(
        self, conn: Any, officer: Operator, capture_id: str
    ) -> FaceTemplate:
        """Inside a transaction: the officer's passed, unused capture, now used."""
        refused = ConflictError("capture the citizen's face first (a passed, unused capture)")
        mine = (
            face_captures.c.id == capture_id,
            face_captures.c.purpose == "desk",
            face_captures.c.operator_id == officer.id,
            face_captures.c.status == "captured",
        )
        row = (await conn.execute(select(face_captures.c.template_sealed).where(*mine))).first()
        if row is None:
            raise refused
        spent = await conn.execute(
            update(face_captures).where(*mine).values(status="used", template_sealed=None)
        )
        if spent.rowcount != 1:  # another action spent it first
            raise refused
        return await self._unseal(capture_id, row[0])

    async def approve_desk(
        self, officer: Operator, identity: Identity, document: dict[str, str], capture_id: str
    ) -> DeskProofing:
        """The officer checked the document and captured the face: the
        proofing, and the activation code for the citizen's device."""
        OperatorService.require(officer, Role.REGISTRATION)
        now = self.clock()
        proofing_id = str(uuid.uuid4())
        code = _new_code()
        expires = now + self.settings.activation_ttl
        async with self.db.transaction() as conn:
            template = await self._spend_desk_capture(conn, officer, capture_id)
            await conn.execute(
                proofings.insert().values(
                    id=proofing_id,
                    method="desk",
                    **_identity_columns(identity),
                    document=document,
                    operator_id=officer.id,
                    template_sealed=await self._seal(proofing_id, template),
                    activation_code_hash=_hash(code),
                    status="issued",
                    created_at=now,
                    expires_at=expires,
                )
            )
            await append_events(
                conn,
                [
                    NewEvent(
                        EventType.IDENTITY_PROOF,
                        now,
                        data={
                            "method": "desk",
                            "proofing": proofing_id,
                            "operator": officer.username,
                            "document_type": document.get("type", ""),
                        },
                    ),
                    NewEvent(
                        EventType.ACTIVATION_ISSUE,
                        now,
                        data={
                            "method": "desk",
                            "proofing": proofing_id,
                            "operator": officer.username,
                        },
                    ),
                ],
            )
        return DeskProofing(proofing_id, code, expires)

    async def redeem(self, code: str) -> Session:
        """The citizen's device spends the activation code: an enrolment
        session for the proofed identity."""
        await self.guard.counted([(self.limits.enrolments, client_address())], factor="enrolment")
        attempt = await self.guard.attempt(
            [
                (self.limits.activation, client_address()),
                (self.limits.address, client_address()),
            ],
            factor="activation",
        )
        now = self.clock()
        async with self.db.transaction() as conn:
            row = (
                await conn.execute(
                    select(proofings).where(
                        proofings.c.activation_code_hash == _hash(code),
                        proofings.c.status == "issued",
                        proofings.c.expires_at > now,
                    )
                )
            ).first()
            if row is None:
                # Commit the attempt's count; say nothing of why.
                session = None
            else:
                session = await self._open(conn, row, row.expires_at)
        if session is None:
            await self.guard.failure(attempt, "unknown, used or expired activation code")
            raise UnauthorizedError("activation code unknown, used or expired")
        await self.guard.success(attempt)
        return session

    async def _open(self, conn: Any, row: Any, until: datetime) -> Session:
        """Inside a transaction: spend the proofing, open (or re-open) the
        account with the proofed face, issue the enrolment token."""
        now = self.clock()
        spent = await conn.execute(
            update(proofings)
            .where(proofings.c.id == row.id, proofings.c.status == "issued")
            .values(status="redeemed", redeemed_at=now)
        )
        if spent.rowcount != 1:
            raise UnauthorizedError("activation code unknown, used or expired")
        identity = Identity(
            kind=row.kind,
            iin=row.iin,
            surname=row.surname,
            given_name=row.given_name,
            email=row.email,
            bin=row.bin,
            organisation=row.organisation,
        )
        owner_id, _existing = await self.accounts.open_for_proofing(
            conn, identity, row.id, until=until
        )
        template = await self._unseal(row.id, row.template_sealed)
        # The account holds the face from now on; the proofing keeps no copy.
        await conn.execute(
            update(proofings)
            .where(proofings.c.id == row.id)
            .values(owner_id=owner_id, template_sealed=FORGOTTEN)
        )
        await self.faces.install_template(conn, owner_id, template, now, source=row.method)
        await append_events(
            conn,
            [
                NewEvent(
                    EventType.ACTIVATION_USE,
                    now,
                    owner_id,
                    data={"method": row.method, "proofing": row.id},
                )
            ],
        )
        return await self.accounts.issue_token(
            conn, owner_id, scope=ENROLMENT, proofing_id=row.id, ttl=until - now
        )

    # -- remotely ----------------------------------------------------------------

    async def remote_start(self, iin: str, email: str) -> Capture:
        """A liveness challenge for whoever claims this IIN; the same answer
        whether or not anyone knows the IIN."""
        if self.registry is None:
            raise ServiceUnavailableError("remote identity proofing is not offered here")
        await self.guard.counted([(self.limits.enrolments, client_address())], factor="enrolment")
        return await self._new_capture(purpose="remote", iin=iin, email=email)

    async def remote_finish(self, capture_id: str, frames: list[bytes]) -> Session:
        """Liveness and a match against the registry's photo: an enrolment
        session for the identity the registry names."""
        if self.registry is None:
            raise ServiceUnavailableError("remote identity proofing is not offered here")
        row = await self._claim_capture(capture_id, purpose="remote")
        attempt = await self.guard.attempt(
            [(self.limits.login, row.iin), (self.limits.address, client_address())],
            factor="remote-proofing",
        )
        try:
            record = await self.registry.lookup(row.iin)
        except CloudsignError:
            await self._set_capture(capture_id, status="refused")
            raise
        passed = False
        template: FaceTemplate | None = None
        challenge = Challenge.from_dict(row.challenge)
        try:
            if record is not None:
                template = await self.faces.reference_from_photo(record.photo)
                passed, _reason = await self.faces.matches_live(template, frames, challenge)
            else:
                # The same face work for an IIN the registry does not know, so
                # the answer's timing does not tell (the result is thrown away).
                await self.faces.matches_live(NOBODY, frames, challenge)
        except CloudsignError:
            passed = False
        if not passed or record is None or template is None:
            await self._set_capture(capture_id, status="refused")
            await self.guard.failure(attempt, "remote proofing refused")
            raise ProofingRefusedError("the identity could not be confirmed")
        await self.guard.success(attempt)
        await self._set_capture(capture_id, status="used")
        now = self.clock()
        proofing_id = str(uuid.uuid4())
        identity = Identity(
            kind="person",
            iin=record.iin,
            surname=record.surname,
            given_name=record.given_name,
            email=row.email,
        )
        expires = now + self.settings.activation_ttl
        async with self.db.transaction() as conn:
            await conn.execute(
                proofings.insert().values(
                    id=proofing_id,
                    method="registry",
                    **_identity_columns(identity),
                    registry_reference=record.reference,
                    template_sealed=await self._seal(proofing_id, template),
                    status="issued",
                    created_at=now,
                    expires_at=expires,
                )
            )
            await append_events(
                conn,
                [
                    NewEvent(
                        EventType.IDENTITY_PROOF,
                        now,
                        data={
                            "method": "registry",
                            "proofing": proofing_id,
                            "reference": record.reference,
                        },
                    )
                ],
            )
            fresh = (
                await conn.execute(select(proofings).where(proofings.c.id == proofing_id))
            ).one()
            return await self._open(conn, fresh, expires)

    # -- housekeeping --------------------------------------------------------------

    async def consume(self, conn: Any, proofing_id: str, owner_id: str) -> None:
        """Inside the first credential's transaction: the proofing is spent
        (a redeemed proofing backs exactly one new key)."""
        spent = await conn.execute(
            update(proofings)
            .where(
                proofings.c.id == proofing_id,
                proofings.c.owner_id == owner_id,
                proofings.c.status == "redeemed",
            )
            .values(status="used")
        )
        if spent.rowcount != 1:
            raise ConflictError("this enrolment was already completed; log in instead")

    async def sweep(self) -> int:
        """Unfinished enrolments lapse; unredeemed proofings are forgotten
        (their templates with them). Returns how many proofings went."""
        await self.accounts.lapse_pending()
        now = self.clock()
        async with self.db.transaction() as conn:
            await conn.execute(
                update(face_captures)
                .where(face_captures.c.expires_at <= now, face_captures.c.status != "used")
                .values(status="used", template_sealed=None)
            )
            gone = await conn.execute(
                update(proofings)
                .where(proofings.c.expires_at <= now, proofings.c.status == "issued")
                .values(status="used", activation_code_hash=None, template_sealed=FORGOTTEN)
            )
        return int(gone.rowcount or 0)

    async def _seal(self, subject: str, template: FaceTemplate) -> bytes:
        return await self.sealer.seal(
            "biometric", template.to_bytes(), TEMPLATE_AAD + subject.encode()
        )

    async def _unseal(self, subject: str, sealed: bytes) -> FaceTemplate:
        raw = await self.sealer.unseal("biometric", sealed, TEMPLATE_AAD + subject.encode())
        return FaceTemplate.from_bytes(raw)


def _identity_columns(identity: Identity) -> dict[str, str]:
    return {
        "kind": identity.kind,
        "iin": identity.iin,
        "bin": identity.bin,
        "surname": identity.surname,
        "given_name": identity.given_name,
        "email": identity.email,
        "organisation": identity.organisation,
    }
