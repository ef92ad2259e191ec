"""The personal cabinet (rule 12): every document an owner signed, kept at
least a year after the certificate expires, and the auditor's view of all
of them without document names."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from cloudsign.errors import NotFoundError
from cloudsign.signing.tables import signed_documents
from cloudsign.storage import Database


@dataclass(frozen=True)
class SignedDocument:
    id: str
    owner_id: str
    name: str | None
    hash_algorithm: str
    document_hash: str  # hex
    format: str  # raw | cades | pades
    signed_at: datetime
    credential_id: str
    certificate_serial: str
    keep_until: datetime


@dataclass(frozen=True)
class StoredSignature:
    format: str
    name: str | None
    signature: bytes


class Cabinet:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def documents(self, owner_id: str | None) -> list[SignedDocument]:
        """The owner's signed documents (None: everyone's, for an auditor), newest first."""
        stmt = select(
            signed_documents.c.id,
            signed_documents.c.owner_id,
            signed_documents.c.name,
            signed_documents.c.hash_algorithm,
            signed_documents.c.document_hash,
            signed_documents.c.format,
            signed_documents.c.signed_at,
            signed_documents.c.credential_id,
            signed_documents.c.certificate_serial,
            signed_documents.c.keep_until,
        ).order_by(signed_documents.c.signed_at.desc())
        if owner_id is not None:
            stmt = stmt.where(signed_documents.c.owner_id == owner_id)
        async with self.db.read() as conn:
            rows = (await conn.execute(stmt)).all()
        return [
            SignedDocument(
                id=r[0],
                owner_id=r[1],
                name=r[2],
                hash_algorithm=r[3],
                document_hash=r[4],
                format=r[5],
                signed_at=r[6],
                credential_id=r[7],
                certificate_serial=r[8],
                keep_until=r[9],
            )
            for r in rows
        ]

    async def document(self, owner_id: str, signature_id: str) -> StoredSignature:
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(
                        signed_documents.c.format,
                        signed_documents.c.name,
                        signed_documents.c.signature,
                    ).where(
                        signed_documents.c.id == signature_id,
                        signed_documents.c.owner_id == owner_id,
                    )
                )
            ).first()
        if row is None:
            raise NotFoundError("no such signed document")
        return StoredSignature(row[0], row[1], row[2])
