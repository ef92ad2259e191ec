"""Tables of signing: live SADs (shared by every process) and the personal
cabinet of signed documents."""

from __future__ import annotations

from sqlalchemy import (
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

from cloudsign.storage.schema import metadata
from cloudsign.storage.types import UTCDateTime

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

#: A live authorisation: what it grants, and the owner key sealed under its
#: HSM SAD key and the client's SAD (hsm_bridge.activation). The SAD itself
#: is known only as its SHA-256 (`digest`).
sads = Table(
    "sads",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("digest", LargeBinary(32), nullable=False, unique=True),
    Column("owner_id", String(36), nullable=False, index=True),
    Column("credential_id", String(36), nullable=False),
    Column("certificate_serial", String(40), nullable=False),
    Column("hash_alg", String(16)),  # None: CSC v1, where authorize names no algorithm
    Column("num_signatures", Integer, nullable=False),
    Column("factors", String(64), nullable=False),  # comma-separated
    Column("key_algorithm", String(32), nullable=False),
    Column("sealed_key", LargeBinary, nullable=False),
    Column("key_expiry", Integer, nullable=False),  # Unix seconds, in the SAD key's CKA_ID
    Column("description", Text),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False, index=True),
)

#: Each authorised hash and how far it got: free, reserved (a signature is
#: being made) or signed. A reservation is a conditional update, so two
#: processes cannot sign one hash twice.
sad_hashes = Table(
    "sad_hashes",
    metadata,
    Column("sad_id", String(36), ForeignKey("sads.id", ondelete="CASCADE"), nullable=False),
    Column("hash", LargeBinary(64), nullable=False),
    Column("state", String(8), nullable=False),
    PrimaryKeyConstraint("sad_id", "hash"),
)
