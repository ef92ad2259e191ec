"""The certificate registry: every certificate the CA issued (owners', the
OCSP responder's, the TSA's), its status and revocation. The status
services (cloudsign/status) read and revoke through it."""

from __future__ import annotations

from sqlalchemy import CheckConstraint, Column, ForeignKey, LargeBinary, String, Table

from cloudsign.storage.schema import metadata
from cloudsign.storage.types import UTCDateTime

certificates = Table(
    "certificates",
    metadata,
    Column("serial", String(40), primary_key=True),  # lower-case hex
    Column("owner_id", String(36), ForeignKey("owners.id"), index=True),
    Column("credential_id", String(36), ForeignKey("credentials.id")),
    Column("subject", String(1000), nullable=False),
    Column("issuer", String(1000), nullable=False),
    Column("not_before", UTCDateTime(), nullable=False),
    Column("not_after", UTCDateTime(), nullable=False),
    Column("der", LargeBinary, nullable=False),
    Column("status", String(16), nullable=False, server_default="good"),
    Column("revoked_at", UTCDateTime()),
    Column("revocation_reason", String(32)),
    Column("issued_at", UTCDateTime(), nullable=False),
    CheckConstraint("status IN ('good', 'revoked')", name="status"),
)
