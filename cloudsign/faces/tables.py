"""Tables of the face factor: each owner's sealed reference template, the
liveness challenges, and the frames already seen (burst replay)."""

from __future__ import annotations

from sqlalchemy import JSON, Column, Float, ForeignKey, LargeBinary, String, Table

from cloudsign.storage.schema import metadata
from cloudsign.storage.types import UTCDateTime

#: The reference template, sealed by the HSM with the owner id as associated
#: data; one row per owner, replaced on re-enrolment, deleted with the account.
face_templates = Table(
    "face_templates",
    metadata,
    Column("owner_id", String(36), ForeignKey("owners.id"), primary_key=True),
    Column("template_sealed", LargeBinary, nullable=False),
    Column("enrolled_at", UTCDateTime(), nullable=False),
)

face_challenges = Table(
    "face_challenges",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("owner_id", String(36), ForeignKey("owners.id"), nullable=False, index=True),
    Column("challenge", JSON, nullable=False),  # biometrics.Challenge.to_dict()
    Column("status", String(16), nullable=False),  # pending | checking | passed | refused
    Column("reason", String(32)),
    Column("score", Float),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("decided_at", UTCDateTime()),
    Column("consumed_at", UTCDateTime()),
)

#: SHA-256 of every frame an owner has submitted: an earlier burst sent again
#: (even for a new challenge whose actions happen to match) is refused.
face_frames_seen = Table(
    "face_frames_seen",
    metadata,
    Column("owner_id", String(36), ForeignKey("owners.id"), primary_key=True),
    Column("frame_sha256", String(64), primary_key=True),
    Column("seen_at", UTCDateTime(), nullable=False),
)
