"""`cloudsign extend`: keep the cabinet's PAdES signatures verifiable after
the time-stamps that protect them age out.

A PAdES-LT or -LTA document in the cabinet is due when it has no document
time-stamp yet (LT), or when the certificate of the TSA that made its newest
time-stamp expires within `before`. Each due document gets, through pyHanko
(`cms.pades_archive_timestamp`), the validation data of its newest
time-stamp in its DSS and a new document time-stamp from this service's TSA
over everything; the cabinet row then holds the extended PDF (the same
document, one incremental update longer), and each extension is an audit
event in the same transaction. B and T signatures carry no validation data
to protect and are left alone (counted as `not_long_term`).

The row is replaced only if it still holds the bytes the extension started
from, so two runs at once cannot lose each other's time-stamp.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import select, update

from cloudsign.clock import Clock
from cloudsign.errors import CloudsignError
from cloudsign.events import EventType, NewEvent, append_events
from cloudsign.signing.cms import (
    DocumentWorker,
    LevelServices,
    PdfTimestamps,
    pades_archive_timestamp,
    pdf_timestamps,
)
from cloudsign.signing.tables import signed_documents
from cloudsign.storage import Database

log = logging.getLogger(__name__)

#: Extend when the newest time-stamp's TSA certificate expires within this.
DEFAULT_BEFORE: Final = timedelta(days=90)
ACTION: Final = "signature.extend"


@dataclass
class ExtendReport:
    """What one run found and did (counts of cabinet rows)."""

    examined: int = 0
    not_long_term: int = 0  # PAdES B or T: nothing to extend
    not_due: int = 0
    due: int = 0
    extended: int = 0
    failed: int = 0
    changed_meanwhile: int = 0  # the row changed under the run; left for the next
    dry_run: bool = False
    due_ids: list[str] = field(default_factory=list)
    extended_ids: list[str] = field(default_factory=list)
    failed_ids: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "examined": self.examined,
            "not_long_term": self.not_long_term,
            "not_due": self.not_due,
            "due": self.due,
            "extended": self.extended,
            "failed": self.failed,
            "changed_meanwhile": self.changed_meanwhile,
            "dry_run": self.dry_run,
            "due_ids": self.due_ids,
            "extended_ids": self.extended_ids,
            "failed_ids": self.failed_ids,
        }


def is_due(stamps: PdfTimestamps, deadline: datetime) -> bool:
    """LT without a document time-stamp, or LTA whose newest TSA
    certificate expires by `deadline`."""
    if not stamps.long_term or stamps.signatures == 0:
        return False
    if stamps.document_timestamps == 0:
        return True
    return stamps.last_tsa_expiry is not None and stamps.last_tsa_expiry <= deadline


class SignatureExtender:
    def __init__(
        self,
        db: Database,
        documents: DocumentWorker,
        services: LevelServices,
        *,
        clock: Clock,
        actor: str,
    ) -> None:
        self.db = db
        self.documents = documents
        self.services = services
        self.clock = clock
        self.actor = actor

    def __repr__(self) -> str:
        return f"SignatureExtender(actor={self.actor!r})"

    async def run(
        self, before: timedelta = DEFAULT_BEFORE, *, dry_run: bool = False
    ) -> ExtendReport:
        report = ExtendReport(dry_run=dry_run)
        async with self.db.read() as conn:
            ids = list(
                (
                    await conn.execute(
                        select(signed_documents.c.id)
                        .where(signed_documents.c.format == "pades")
                        .order_by(signed_documents.c.signed_at)
                    )
                ).scalars()
            )
        for signature_id in ids:
            await self._one(signature_id, before, report)
        return report

    async def _one(self, signature_id: str, before: timedelta, report: ExtendReport) -> None:
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(
                        signed_documents.c.owner_id,
                        signed_documents.c.credential_id,
                        signed_documents.c.signature,
                    ).where(signed_documents.c.id == signature_id)
                )
            ).first()
        if row is None:  # deleted meanwhile (retention)
            return
        owner_id, credential_id, pdf = row[0], row[1], bytes(row[2])
        report.examined += 1

        async def read(_session: Any) -> PdfTimestamps:
            return pdf_timestamps(pdf)

        try:
            stamps = await self.documents.run(read)
        except CloudsignError:
            report.failed += 1
            report.failed_ids.append(signature_id)
            log.warning("extend: signature %s is not a readable PDF", signature_id)
            return
        if not stamps.long_term:
            report.not_long_term += 1
            return
        if not is_due(stamps, self.clock() + before):
            report.not_due += 1
            return
        report.due += 1
        report.due_ids.append(signature_id)
        if report.dry_run:
            return
        services = self.services
        try:
            extended = await self.documents.run(
                lambda session: pades_archive_timestamp(pdf, session=session, services=services)
            )
        except CloudsignError as e:
            report.failed += 1
            report.failed_ids.append(signature_id)
            log.warning("extend: signature %s not extended: %s", signature_id, e.detail)
            return
        now = self.clock()
        async with self.db.transaction() as conn:
            result = await conn.execute(
                update(signed_documents)
                .where(
                    signed_documents.c.id == signature_id,
                    signed_documents.c.signature == pdf,
                )
                .values(signature=extended)
            )
            if result.rowcount != 1:
                report.changed_meanwhile += 1
                return
            await append_events(
                conn,
                [
                    NewEvent(
                        EventType.OPERATOR_ACTION,
                        now,
                        owner_id,
                        credential_id,
                        {
                            "action": ACTION,
                            "operator": self.actor,
                            "signature_id": signature_id,
                            "document_timestamps": stamps.document_timestamps + 1,
                            "previous_tsa_expiry": None
                            if stamps.last_tsa_expiry is None
                            else stamps.last_tsa_expiry.isoformat(),
                        },
                    )
                ],
            )
        report.extended += 1
        report.extended_ids.append(signature_id)
