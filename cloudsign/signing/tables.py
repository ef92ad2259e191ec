"""Tables of signing: the personal cabinet of signed documents."""

from __future__ import annotations

from sqlalchemy import Column, ForeignKey, Index, LargeBinary, String, Table

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
