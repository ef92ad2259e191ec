"""Tables of the status services: every published CRL (the official notice
of revocation, kept as issued) and the public compromise notices.

The revocation state itself stays in `certificates` (status, revoked_at,
revocation_reason); this module adds an index on `revoked_at` so the
watcher that notices revocations made by other processes reads only the
recent ones.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
)

from cloudsign.ca import certificates
from cloudsign.storage.schema import metadata
from cloudsign.storage.types import UTCDateTime

crls = Table(
    "crls",
    metadata,
    # issuing | root: whose certificates the CRL covers (and who signs it)
    Column("scope", String(16), primary_key=True),
    # one sequence per scope, shared by complete and delta CRLs (RFC 5280 §5.2.4)
    Column("crl_number", BigInteger, primary_key=True, autoincrement=False),
    Column("kind", String(8), nullable=False),  # full | delta
    Column("base_crl_number", BigInteger),  # the complete CRL a delta builds on
    Column("this_update", UTCDateTime(), nullable=False),
    Column("next_update", UTCDateTime(), nullable=False),
    Column("entries", Integer, nullable=False),
    Column("der", LargeBinary, nullable=False),
    CheckConstraint("kind IN ('full', 'delta')", name="kind"),
)

notices = Table(
    "notices",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("published_at", UTCDateTime(), nullable=False, index=True),
    Column("title", String(200), nullable=False),
    Column("summary", Text, nullable=False),  # what happened
    Column("measures", Text, nullable=False),  # what the CA did about it
    Column("serials", JSON, nullable=False),  # certificates concerned (hex)
    Column("actor", String(200), nullable=False),
)

Index("ix_certificates_revoked_at", certificates.c.revoked_at)
