"""The OCSP responder's and the TSA's certificates are renewed while the
service runs: the clock moves to within `RENEW_BEFORE` of their expiry, the
leader re-issues them (same HSM keys), and another process sharing the
database signs with the new ones without a restart."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from asn1crypto import cms, ocsp, tsp
from sqlalchemy import func, select

from cloudsign.appkeys import CA, HSM, SETTINGS
from cloudsign.ca import certificates
from cloudsign.status.certs import RENEW_BEFORE, ServiceRole
from cloudsign.status.services import StatusServices
from cloudsign.storage import Database
from tests.status.status_helpers import cert_id, ocsp_request


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


async def _service_certs(db: Database) -> int:
    async with db.read() as conn:
        return int(
            (
                await conn.execute(
                    select(func.count())
                    .select_from(certificates)
                    .where(certificates.c.owner_id.is_(None))
                )
            ).scalar_one()
        )


def _timestamp_request() -> bytes:
    return bytes(
        tsp.TimeStampReq(
            {
                "version": "v1",
                "message_imprint": {
                    "hash_algorithm": {"algorithm": "sha256"},
                    "hashed_message": hashlib.sha256(os.urandom(8)).digest(),
                },
                "cert_req": True,
            }
        ).dump()
    )


async def test_renewed_while_running_and_taken_up_by_another_process(
    app: Any, tmp_path: Path
) -> None:
    db = Database(f"sqlite:///{tmp_path / 'renewal.db'}")
    await db.migrate()
    clock = Clock()
    settings = dataclasses.replace(app[SETTINGS].status, pki_dir=tmp_path / "pki")
    try:
        leader = await StatusServices.build(settings, db, app[HSM], app[CA], clock=clock)
        # Another process on the same machine: it reads what the first issued.
        follower = await StatusServices.build(settings, db, app[HSM], app[CA], clock=clock)
        first = {
            ServiceRole.OCSP: leader.ocsp_identity.certificate,
            ServiceRole.TSA: leader.tsa_identity.certificate,
        }
        assert follower.ocsp_identity.certificate.dump() == first[ServiceRole.OCSP].dump()
        issued = await _service_certs(db)
        assert issued == 2
        assert await leader.refresh_identities(issue=True) == []  # nothing due yet

        # A month before the end of the first year.
        clock.now = first[ServiceRole.OCSP].not_valid_after - RENEW_BEFORE + timedelta(hours=1)
        assert await follower.refresh_identities(issue=False) == []  # followers never issue
        assert await _service_certs(db) == issued

        assert await leader.refresh_identities(issue=True) == [ServiceRole.OCSP, ServiceRole.TSA]
        assert await _service_certs(db) == issued + 2
        assert await follower.refresh_identities(issue=False) == [
            ServiceRole.OCSP,
            ServiceRole.TSA,
        ]
        for role, identity in (
            (ServiceRole.OCSP, follower.ocsp_identity),
            (ServiceRole.TSA, follower.tsa_identity),
        ):
            new, old = identity.certificate, first[role]
            assert new.serial_number != old.serial_number
            assert new.public_key.dump() == old.public_key.dump()  # the same HSM key
            assert new.not_valid_after > old.not_valid_after
            assert new.not_valid_before <= clock.now
            leading = leader.ocsp_identity if role is ServiceRole.OCSP else leader.tsa_identity
            assert leading.certificate.dump() == new.dump()

        # The follower's OCSP answers carry the new certificate...
        issuing = app[CA].issuing
        answer = ocsp.OCSPResponse.load(
            await follower.ocsp.respond(ocsp_request(cert_id(12345, issuing)))
        )
        basic = answer["response_bytes"]["response"].parsed
        assert basic["certs"][0].dump() == follower.ocsp_identity.certificate.dump()

        # ...and its time-stamps name it in their signed ESS attribute.
        reply = tsp.TimeStampResp.load(await follower.tsa.respond(_timestamp_request()))
        assert reply["status"]["status"].native == "granted"
        signed = reply["time_stamp_token"]["content"]
        assert isinstance(signed, cms.SignedData)
        tsa_cert = follower.tsa_identity.certificate
        (signer,) = signed["signer_infos"]
        assert signer["sid"].chosen["serial_number"].native == tsa_cert.serial_number
        (ess,) = [
            a["values"][0]
            for a in signer["signed_attrs"]
            if a["type"].native == "signing_certificate_v2"
        ]
        assert ess["certs"][0]["cert_hash"].native == hashlib.sha256(tsa_cert.dump()).digest()
        assert tsa_cert.dump() in [c.chosen.dump() for c in signed["certificates"]]

        # A restart on the same machine keeps the renewed certificates.
        again = await StatusServices.build(settings, db, app[HSM], app[CA], clock=clock)
        assert again.tsa_identity.certificate.dump() == tsa_cert.dump()
        assert await _service_certs(db) == issued + 2
    finally:
        await db.close()


async def test_processes_starting_together_issue_one_certificate_per_role(
    app: Any, pg_database: str, tmp_path: Path
) -> None:
    """Two processes on two machines (their own pki dirs), one PostgreSQL
    database, starting at once on nothing: one issues each certificate, the
    other takes up the registered one (before, both issued, and both
    registering one serial failed a worker's start on pk_certificates)."""
    dbs = [Database(pg_database), Database(pg_database)]
    await dbs[0].migrate()
    clock = Clock()
    base = app[SETTINGS].status
    try:
        before = await _service_certs(dbs[0])
        builds = await asyncio.gather(
            *(
                StatusServices.build(
                    dataclasses.replace(base, pki_dir=tmp_path / f"pki-{i}"),
                    db,
                    app[HSM],
                    app[CA],
                    clock=clock,
                )
                for i, db in enumerate(dbs)
            )
        )
        a, b = builds
        assert a.ocsp_identity.certificate.dump() == b.ocsp_identity.certificate.dump()
        assert a.tsa_identity.certificate.dump() == b.tsa_identity.certificate.dump()
        assert await _service_certs(dbs[0]) <= before + 2
        for i in range(2):  # each machine keeps its copy
            assert (tmp_path / f"pki-{i}" / "ocsp.pem").exists()
    finally:
        for db in dbs:
            await db.close()
