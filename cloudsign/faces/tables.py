"""Tables of the face factor and of signing: face challenges, the frames
already seen (burst replay), and the personal cabinet of signed documents."""

from __future__ import annotations

from sqlalchemy import JSON, Column, Float, ForeignKey, Index, LargeBinary, String, Table

from cloudsign.storage.schema import metadata
from cloudsign.storage.types import UTCDateTime

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

signed_documents = Table(
    "signed_documents",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("owner_id", String(36), ForeignKey("owners.id"), nullable=False),
    Column("credential_id", String(36), ForeignKey("credentials.id"), nullable=False),
    Column("certificate_serial", String(40), nullable=False),
    Column("name", String(400)),  # document name, if the owner gave one
    Column("hash_algorithm", String(16), nullable=False),
    Column("document_hash", String(128), nullable=False),  # hex
    Column("format", String(16), nullable=False),  # raw | cades | pades
    Column("signature", LargeBinary, nullable=False),  # raw value, .p7s or signed PDF
    Column("signed_at", UTCDateTime(), nullable=False),
    Column("keep_until", UTCDateTime(), nullable=False),  # certificate expiry + 1 year
)
Index(
    "ix_signed_documents_owner_signed_at", signed_documents.c.owner_id, signed_documents.c.signed_at
)
