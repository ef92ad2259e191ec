"""The status services as one value: built from their settings section,
their published URLs, and the background work they run (CRL publication,
the revocation watcher, renewal of the OCSP and TSA certificates). The
app's cleanup context (cloudsign/app.py) starts and stops them."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError

from cloudsign.ca import CertificateAuthority, PkiUrls
from cloudsign.clock import Clock
from cloudsign.settings import StatusSettings
from cloudsign.status.certs import (
    RENEW_CHECK_INTERVAL,
    ServiceIdentity,
    ServiceRole,
    ensure_service_identity,
    registered_service_certificate,
)
from cloudsign.status.crl import CrlPolicy, CrlPublisher
from cloudsign.status.notices import NoticeService
from cloudsign.status.ocsp import OcspResponder
from cloudsign.status.revocation import RevocationService, RevocationWatcher
from cloudsign.status.tsa import TimeStampAuthority, TsaConfig
from cloudsign.storage import Database
from hsm_bridge import HsmError, ServiceKeys

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StatusUrls(PkiUrls):
    """The CA's published URLs (`PkiUrls`) plus the status pages."""

    def cert(self, which: str) -> str:
        return f"{self.base}/pki/ca/{which}.cer"

    @property
    def notices(self) -> str:
        return f"{self.base}/pki/notices"

    def listing(self) -> dict[str, str]:
        return {
            "root_certificate": self.cert("root"),
            "issuing_certificate": self.cert("issuing"),
            "ocsp_responder_certificate": self.cert("ocsp"),
            "tsa_certificate": self.cert("tsa"),
            "crl": self.crl,
            "delta_crl": self.delta_crl,
            "root_crl": self.root_crl,
            "ocsp": self.ocsp,
            "tsa": self.tsa,
            "notices": self.notices,
            "notices_json": f"{self.notices}.json",
            "notices_atom": f"{self.notices}.atom",
        }


def crl_policy(settings: StatusSettings, urls: StatusUrls) -> CrlPolicy:
    return CrlPolicy(
        interval=settings.crl_interval,
        validity=settings.crl_validity,
        delta_interval=settings.delta_crl_interval,
        delta_url=urls.delta_crl,
    )


@dataclass(frozen=True)
class StatusServices:
    settings: StatusSettings
    urls: StatusUrls
    revocation: RevocationService
    watcher: RevocationWatcher
    crl: CrlPublisher
    ocsp: OcspResponder
    tsa: TimeStampAuthority
    notices: NoticeService
    db: Database
    keys: ServiceKeys
    ca: CertificateAuthority
    clock: Clock

    @property
    def ocsp_identity(self) -> ServiceIdentity:
        return self.ocsp.identity

    @property
    def tsa_identity(self) -> ServiceIdentity:
        return self.tsa.identity

    @classmethod
    async def build(
        cls,
        settings: StatusSettings,
        db: Database,
        keys: ServiceKeys,
        ca: CertificateAuthority,
        *,
        clock: Clock,
    ) -> StatusServices:
        """The OCSP and TSA identities (created or renewed), the published
        CRLs loaded, the OCSP cache and CRL publisher listening to revocations."""
        urls = StatusUrls(settings.public_url)
        now = clock()
        ocsp_identity = await ensure_service_identity(
            ServiceRole.OCSP, keys, ca, settings.pki_dir, db, now=now
        )
        tsa_identity = await ensure_service_identity(
            ServiceRole.TSA, keys, ca, settings.pki_dir, db, now=now
        )
        revocation = RevocationService(db, clock=clock)
        publisher = CrlPublisher(db, ca, crl_policy(settings, urls), clock=clock)
        await publisher.load()
        responder = OcspResponder(
            db,
            ca.issuing,
            ocsp_identity,
            validity=settings.ocsp_validity,
            clock=clock,
            extra_certs=[ca.issuing],
        )
        revocation.subscribe(responder)
        revocation.subscribe(publisher)
        watcher = RevocationWatcher(revocation, interval=settings.poll_interval.total_seconds())
        return cls(
            settings=settings,
            urls=urls,
            revocation=revocation,
            watcher=watcher,
            crl=publisher,
            ocsp=responder,
            tsa=TimeStampAuthority(
                tsa_identity,
                TsaConfig(settings.tsa_policy_oid, settings.tsa_accuracy_ms),
                chain=[ca.issuing],
            ),
            notices=NoticeService(db, clock=clock),
            db=db,
            keys=keys,
            ca=ca,
            clock=clock,
        )

    async def refresh_identities(self, *, issue: bool) -> list[ServiceRole]:
        """Renew what is due (`issue`: the leader only), then sign with the
        newest registered certificate of each key. Returns the roles whose
        certificate changed in this process."""
        now = self.clock()
        changed = []
        for role, current in (
            (ServiceRole.OCSP, self.ocsp.identity),
            (ServiceRole.TSA, self.tsa.identity),
        ):
            if issue:
                await ensure_service_identity(
                    role, self.keys, self.ca, self.settings.pki_dir, self.db, now=now
                )
            newest = await registered_service_certificate(
                role, self.keys, self.ca, self.db, now=now
            )
            held = current.certificate
            if newest is None or (newest.not_valid_after, newest.not_valid_before) <= (
                held.not_valid_after,
                held.not_valid_before,
            ):
                continue
            fresh = dataclasses.replace(current, certificate=newest)
            if role is ServiceRole.OCSP:
                self.ocsp.use_identity(fresh)
            else:
                self.tsa.use_identity(fresh)
            log.info(
                "%s certificate renewed: serial %x, valid until %s",
                role.value,
                newest.serial_number,
                newest.not_valid_after.isoformat(),
            )
            changed.append(role)
        return changed

    async def _refresh_every(self, interval: float, *, issue: bool) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.refresh_identities(issue=issue)
            except (HsmError, OSError, SQLAlchemyError) as e:
                log.warning("service certificate renewal failed: %s", e)

    async def start_watching(self) -> list[asyncio.Task[None]]:
        """Every process: watch for revocations made elsewhere (the OCSP
        cache hears of them) and follow the CRLs the leader publishes."""
        await self.crl.load()
        await self.watcher.poll()
        return [
            asyncio.create_task(self.crl.follow(), name="crl-follower"),
            asyncio.create_task(self.watcher.run(), name="revocation-watcher"),
            asyncio.create_task(
                self._refresh_every(RENEW_CHECK_INTERVAL.total_seconds() / 4, issue=False),
                name="service-certificate-follower",
            ),
        ]

    async def start_publishing(self) -> list[asyncio.Task[None]]:
        """The leader only (cloudsign/storage/leader.py): publish what is due
        at once (the URLs in certificates must resolve), then keep publishing."""
        await self.crl.tick()
        await self.refresh_identities(issue=True)
        return [
            asyncio.create_task(self.crl.run(), name="crl-publisher"),
            asyncio.create_task(
                self._refresh_every(RENEW_CHECK_INTERVAL.total_seconds(), issue=True),
                name="service-certificate-renewal",
            ),
        ]
