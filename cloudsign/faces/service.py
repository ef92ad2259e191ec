"""The biometric factor in the service: face enrolment (template sealed by the
HSM), liveness challenges, burst verification and the one-time use of a
passed check by an authorisation.

What the check does and does not stop is in docs/biometrics.md. Here:
- a challenge is single-use: the burst submission claims it atomically, so a
  burst sent twice (or two bursts raced) gets one verdict;
- every frame's SHA-256 is remembered per owner, so an earlier burst cannot
  be replayed against a new challenge whose actions happen to match;
- a passed check backs exactly one authorisation, within `face_pass_ttl_seconds`.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy import delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from biometrics import (
    BiometricsError,
    BiometricsPolicy,
    Challenge,
    EnrolmentRefusedError,
    FaceTemplate,
    FaceWorkerPool,
)
from cloudsign.clock import Clock
from cloudsign.errors import (
    CloudsignError,
    ConflictError,
    FactorError,
    NotFoundError,
    PreconditionError,
    ServiceUnavailableError,
    ValidationError,
)
from cloudsign.events import EventType, append_event
from cloudsign.faces.tables import face_challenges, face_frames_seen, face_templates
from cloudsign.guard import Guard, Limits
from cloudsign.settings import FaceSettings
from cloudsign.storage import Database
from cloudsign.web.client import client_address
from hsm_bridge import Sealer

TEMPLATE_AAD_LABEL: Final = b"cloudsign/face-template/v1\x00"


class UnsupportedImageError(CloudsignError):
    code = "unsupported_media_type"
    status = 415
    title = "Unsupported image format"


class ImageTooLargeError(CloudsignError):
    code = "image_too_large"
    status = 413
    title = "Image too large"


class FaceRefusedError(CloudsignError):
    """The images are images, but not usable as a face (quality gate)."""

    code = "face_refused"
    status = 422
    title = "Face image refused"

    def __init__(self, detail: str, reason: str) -> None:
        super().__init__(detail)
        self.reason = reason


def translate(e: BiometricsError) -> CloudsignError:
    """Map library errors onto HTTP-meaningful service errors."""
    if e.code == "unsupported_format":
        return UnsupportedImageError(str(e))
    if e.code == "image_too_large":
        return ImageTooLargeError(str(e))
    if e.code in ("malformed_image", "invalid_input"):
        return ValidationError(str(e), field="frames")
    if isinstance(e, EnrolmentRefusedError):
        return FaceRefusedError(str(e), e.code)
    if e.code in ("worker_busy", "worker_failure"):
        return ServiceUnavailableError("face matching is busy; try again")
    return ValidationError(str(e))


def policy_from(settings: FaceSettings) -> BiometricsPolicy:
    return BiometricsPolicy(match_threshold=settings.match_threshold)


def _template_aad(owner_id: str) -> bytes:
    return TEMPLATE_AAD_LABEL + owner_id.encode()


@dataclass(frozen=True)
class FaceEnrolment:
    images: int
    enrolled_at: datetime


@dataclass(frozen=True)
class IssuedChallenge:
    id: str
    nonce: str
    actions: tuple[str, ...]
    expires_at: datetime


@dataclass(frozen=True)
class BurstVerdict:
    """What a client learns of a burst: passed or not, and why not. The
    distance and the threshold stay inside: they would teach an impostor
    how close a forgery came."""

    challenge_id: str
    passed: bool
    reason: str


class FaceService:
    def __init__(
        self,
        db: Database,
        sealer: Sealer,
        pool: FaceWorkerPool,
        settings: FaceSettings,
        guard: Guard,
        limits: Limits,
        *,
        clock: Clock,
    ) -> None:
        self.db = db
        self.sealer = sealer
        self.pool = pool
        self.settings = settings
        self.guard = guard
        self.limits = limits
        self.clock = clock

    async def replacement(self, owner_id: str, images: list[bytes]) -> FaceTemplate:
        """A new reference template from 1..3 images, which must be the same
        face as the current template (a different face is a new identity
        proofing, not a replacement). Nothing is stored yet."""
        # Face work costs CPU: counted like a challenge.
        await self.guard.counted([(self.limits.challenges, owner_id)], factor="face-replacement")
        try:
            template = await self.pool.enrol(images)
        except BiometricsError as e:
            raise translate(e) from e
        if (await self._template(owner_id)).distance_to(template) > self.settings.match_threshold:
            raise FaceRefusedError(
                "these images are not the enrolled face; a new face needs a new identity "
                "proofing at a registration desk",
                "face_mismatch",
            )
        return template

    async def is_enrolled_face(self, owner_id: str, template: FaceTemplate) -> bool:
        """Whether a live capture taken elsewhere (a registration desk's) is
        the owner's enrolled face."""
        return (await self._template(owner_id)).distance_to(
            template
        ) <= self.settings.match_threshold

    async def replace(self, owner_id: str, template: FaceTemplate) -> FaceEnrolment:
        """Install a `replacement`; the caller has checked the other factors
        and a live match against the current template (cloudsign/lifecycle)."""
        now = self.clock()
        async with self.db.transaction() as conn:
            await self.install_template(conn, owner_id, template, now, source="replacement")
        return FaceEnrolment(template.images, now)

    async def install_template(
        self,
        conn: AsyncConnection,
        owner_id: str,
        template: FaceTemplate,
        at: datetime,
        *,
        source: str,
    ) -> None:
        """Inside the caller's transaction: this template is the owner's
        reference from now on (a proofing's capture, or a replacement)."""
        sealed = await self.sealer.seal("biometric", template.to_bytes(), _template_aad(owner_id))
        await _upsert_template(conn, owner_id, sealed, at)
        await append_event(
            conn, EventType.FACE_ENROL, owner_id=owner_id, data={"source": source}, at=at
        )

    # -- live captures for identity proofing -------------------------------------

    def fresh_challenge(self) -> Challenge:
        return Challenge.new(
            vocabulary=self.settings.liveness_vocabulary,
            length=self.settings.liveness_action_count,
            lifetime=self.settings.challenge_ttl,
            now=self.clock(),
        )

    async def capture_live(self, frames: list[bytes], challenge: Challenge) -> FaceTemplate:
        """A face captured live (the challenge's actions), as a template:
        what a registration officer records at the desk."""
        try:
            verdict, template = await self.pool.enrol_live(frames, challenge, now=self.clock())
        except BiometricsError as e:
            raise translate(e) from e
        if not verdict.accepted or template is None:
            raise FaceRefusedError(
                f"the capture was refused: {verdict.reason.value}", verdict.reason.value
            )
        return template

    async def reference_from_photo(self, photo: bytes) -> FaceTemplate:
        """A template from an official reference photo (the registry's)."""
        try:
            return await self.pool.enrol([photo])
        except BiometricsError as e:
            raise translate(e) from e

    async def matches_live(
        self, template: FaceTemplate, frames: list[bytes], challenge: Challenge
    ) -> tuple[bool, str]:
        """Liveness and a match against `template` (no account involved)."""
        try:
            verdict = await self.pool.verify(template, frames, challenge, now=self.clock())
        except BiometricsError as e:
            raise translate(e) from e
        return verdict.accepted, verdict.reason.value

    async def enrolled(self, owner_id: str) -> bool:
        async with self.db.read() as conn:
            found = await conn.execute(
                select(face_templates.c.owner_id).where(face_templates.c.owner_id == owner_id)
            )
            return found.first() is not None

    async def erase_owner(self, conn: AsyncConnection, owner_id: str, at: datetime) -> None:
        """Account deletion: the template goes (accounts.AccountEraser)."""
        await conn.execute(delete(face_templates).where(face_templates.c.owner_id == owner_id))

    async def _template(self, owner_id: str) -> FaceTemplate:
        async with self.db.read() as conn:
            sealed = (
                await conn.execute(
                    select(face_templates.c.template_sealed).where(
                        face_templates.c.owner_id == owner_id
                    )
                )
            ).scalar_one_or_none()
        if sealed is None:
            raise PreconditionError("no face enrolled for this account")
        raw = await self.sealer.unseal("biometric", sealed, _template_aad(owner_id))
        try:
            return FaceTemplate.from_bytes(raw)
        except BiometricsError as e:
            raise PreconditionError("the stored face template is unusable; enrol again") from e

    async def new_challenge(self, owner_id: str) -> IssuedChallenge:
        await self._template(owner_id)  # refuse early if there is nothing to match
        await self.guard.counted([(self.limits.challenges, owner_id)], factor="face-challenge")
        challenge = self.fresh_challenge()
        challenge_id = str(uuid.uuid4())
        async with self.db.transaction() as conn:
            await conn.execute(
                face_challenges.insert().values(
                    id=challenge_id,
                    owner_id=owner_id,
                    challenge=challenge.to_dict(),
                    status="pending",
                    created_at=challenge.issued_at,
                    expires_at=challenge.expires_at,
                )
            )
        return IssuedChallenge(
            challenge_id,
            challenge.nonce,
            tuple(a.value for a in challenge.actions),
            challenge.expires_at,
        )

    async def submit_burst(
        self, owner_id: str, challenge_id: str, frames: list[bytes]
    ) -> BurstVerdict:
        """Verify a burst captured for the challenge; one verdict per challenge."""
        now = self.clock()
        async with self.db.transaction() as conn:
            row = (
                await conn.execute(
                    select(face_challenges.c.challenge, face_challenges.c.status).where(
                        face_challenges.c.id == challenge_id,
                        face_challenges.c.owner_id == owner_id,
                    )
                )
            ).first()
            if row is None:
                raise NotFoundError("no such face challenge")
            claimed = await conn.execute(
                update(face_challenges)
                .where(
                    face_challenges.c.id == challenge_id,
                    face_challenges.c.status == "pending",
                    face_challenges.c.expires_at > now,
                )
                .values(status="checking")
            )
            if claimed.rowcount != 1:
                raise ConflictError("face challenge already used or expired; request a new one")
        challenge = Challenge.from_dict(row[0])
        # Counted before any matching: parallel bursts cannot exceed the limit.
        attempt = await self.guard.attempt(
            [(self.limits.face, owner_id), (self.limits.address, client_address())],
            factor="face",
            owner_id=owner_id,
        )
        digests = sorted({hashlib.sha256(f).hexdigest() for f in frames})
        replayed = await self._remember_frames(owner_id, digests, now)
        if replayed:
            await self.guard.failure(attempt, "burst_replayed")
            return await self._decide(owner_id, challenge_id, False, "burst_replayed", None)
        template = await self._template(owner_id)
        try:
            verdict = await self.pool.verify(template, frames, challenge, now=now)
        except BiometricsError as e:
            await self.guard.failure(attempt, e.code)
            await self._decide(owner_id, challenge_id, False, e.code, None)
            raise translate(e) from e
        if verdict.accepted:
            await self.guard.success(attempt)
        else:
            await self.guard.failure(attempt, verdict.reason.value)
        return await self._decide(
            owner_id, challenge_id, verdict.accepted, verdict.reason.value, verdict.score
        )

    async def _remember_frames(self, owner_id: str, digests: list[str], now: datetime) -> bool:
        """Record the frames; True if any was seen in an earlier burst."""
        async with self.db.transaction() as conn:
            seen = (
                await conn.execute(
                    select(face_frames_seen.c.frame_sha256).where(
                        face_frames_seen.c.owner_id == owner_id,
                        face_frames_seen.c.frame_sha256.in_(digests),
                    )
                )
            ).first()
            if seen is not None:
                return True
            try:
                await conn.execute(
                    insert(face_frames_seen),
                    [{"owner_id": owner_id, "frame_sha256": d, "seen_at": now} for d in digests],
                )
            except IntegrityError:
                return True
        return False

    async def _decide(
        self, owner_id: str, challenge_id: str, accepted: bool, reason: str, score: float | None
    ) -> BurstVerdict:
        now = self.clock()
        async with self.db.transaction() as conn:
            await conn.execute(
                update(face_challenges)
                .where(face_challenges.c.id == challenge_id)
                .values(
                    status="passed" if accepted else "refused",
                    reason=reason,
                    score=score,
                    decided_at=now,
                )
            )
        return BurstVerdict(challenge_id, accepted, reason)

    async def consume(self, owner_id: str, challenge_id: object) -> None:
        """Spend a passed face check on one authorisation."""
        if not isinstance(challenge_id, str) or not challenge_id:
            raise FactorError("a passed face check is required (face_challenge_id)")
        now = self.clock()
        async with self.db.transaction() as conn:
            result = await conn.execute(
                update(face_challenges)
                .where(
                    face_challenges.c.id == challenge_id,
                    face_challenges.c.owner_id == owner_id,
                    face_challenges.c.status == "passed",
                    face_challenges.c.consumed_at.is_(None),
                    face_challenges.c.decided_at > now - self.settings.pass_ttl,
                )
                .values(consumed_at=now)
            )
        if result.rowcount != 1:
            raise FactorError("no unused, recent, passed face check with this id")


async def _upsert_template(
    conn: AsyncConnection, owner_id: str, sealed: bytes, now: datetime
) -> None:
    values = {"owner_id": owner_id, "template_sealed": sealed, "enrolled_at": now}
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(face_templates).values(**values)
    await conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[face_templates.c.owner_id],
            set_={"template_sealed": sealed, "enrolled_at": now},
        )
    )
