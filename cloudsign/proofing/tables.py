"""Tables of identity proofing: live face captures (at the desk, or against
the registry's photo) and the proofings they back."""

from __future__ import annotations

from sqlalchemy import JSON, CheckConstraint, Column, ForeignKey, LargeBinary, String, Table

from cloudsign.storage.schema import metadata
from cloudsign.storage.types import UTCDateTime

#: A liveness challenge and, once passed, the face it captured (sealed).
face_captures = Table(
    "face_captures",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("purpose", String(16), nullable=False),  # desk | remote
    Column("operator_id", String(36), ForeignKey("operators.id")),  # desk: who captured
    Column("iin", String(12)),  # remote: who claims to be there
    Column("email", String(320)),  # remote: the contact the applicant gave
    Column("challenge", JSON, nullable=False),
    Column("status", String(16), nullable=False),  # pending | checking | captured | refused | used
    Column("template_sealed", LargeBinary),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    CheckConstraint("purpose IN ('desk', 'remote')", name="purpose"),
)

proofings = Table(
    "proofings",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("method", String(16), nullable=False),  # desk | registry
    Column("kind", String(16), nullable=False),
    Column("iin", String(12), nullable=False, index=True),
    Column("bin", String(12), nullable=False, server_default=""),
    Column("surname", String(200), nullable=False),
    Column("given_name", String(200), nullable=False),
    Column("email", String(320), nullable=False),
    Column("organisation", String(400), nullable=False, server_default=""),
    # desk: the identity document the officer checked (type and number)
    Column("document", JSON),
    Column("operator_id", String(36), ForeignKey("operators.id")),
    # registry: which signed answer the identity came from
    Column("registry_reference", String(128)),
    # The face captured live (desk) or the registry photo's template, sealed.
    Column("template_sealed", LargeBinary, nullable=False),
    # desk: SHA-256 of the one-time activation code handed to the citizen
    Column("activation_code_hash", String(64), unique=True),
    Column("status", String(16), nullable=False),  # issued | redeemed | used
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("redeemed_at", UTCDateTime()),
    Column("owner_id", String(36), ForeignKey("owners.id")),
    CheckConstraint("method IN ('desk', 'registry')", name="method"),
    CheckConstraint("status IN ('issued', 'redeemed', 'used')", name="status"),
)
