"""Wiring of the status services into the app: their `web.AppKey`s, the
public URLs, and the cleanup context that creates the OCSP and TSA
identities and runs the CRL publisher and the revocation watcher."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

from aiohttp import web

from cloudsign.appkeys import CA, DATABASE, HSM, SETTINGS
from cloudsign.ca.authority import PkiUrls
from cloudsign.settings import Settings
from cloudsign.status.certs import ServiceIdentity, ServiceRole, ensure_service_identity
from cloudsign.status.crl import CrlPolicy, CrlPublisher
from cloudsign.status.notices import NoticeService
from cloudsign.status.ocsp import OcspResponder
from cloudsign.status.revocation import RevocationService, RevocationWatcher, utc_now
from cloudsign.status.tsa import TimeStampAuthority, TsaConfig


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


@dataclass(frozen=True)
class StatusServices:
    urls: StatusUrls
    revocation: RevocationService
    watcher: RevocationWatcher
    crl: CrlPublisher
    ocsp: OcspResponder
    tsa: TimeStampAuthority
    notices: NoticeService
    ocsp_identity: ServiceIdentity
    tsa_identity: ServiceIdentity


STATUS = web.AppKey("status", StatusServices)
#: The revocation service alone: `await app[REVOCATION].revoke(serial, reason, actor)`.
REVOCATION = web.AppKey("revocation", RevocationService)


def crl_policy(settings: Settings, urls: StatusUrls) -> CrlPolicy:
    return CrlPolicy(
        interval=timedelta(hours=settings.crl_interval_hours),
        validity=timedelta(hours=settings.crl_validity_hours),
        delta_interval=timedelta(minutes=settings.delta_crl_interval_minutes),
        delta_url=urls.delta_crl,
    )


async def status_context(app: web.Application) -> AsyncIterator[None]:
    settings, db, bridge, ca = app[SETTINGS], app[DATABASE], app[HSM], app[CA]
    urls = StatusUrls(settings.effective_public_url)
    ocsp_identity = await ensure_service_identity(
        ServiceRole.OCSP, bridge, ca, settings.pki_dir, db
    )
    tsa_identity = await ensure_service_identity(ServiceRole.TSA, bridge, ca, settings.pki_dir, db)
    revocation = RevocationService(db, clock=utc_now)
    publisher = CrlPublisher(db, ca, crl_policy(settings, urls), clock=utc_now)
    await publisher.load()
    responder = OcspResponder(
        db,
        ca.issuing,
        ocsp_identity,
        validity=timedelta(seconds=settings.ocsp_validity_seconds),
        clock=utc_now,
        extra_certs=[ca.issuing],
    )
    revocation.subscribe(responder)
    revocation.subscribe(publisher)
    watcher = RevocationWatcher(revocation, interval=settings.status_poll_ms / 1000)
    services = StatusServices(
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
        notices=NoticeService(db, clock=utc_now),
        ocsp_identity=ocsp_identity,
        tsa_identity=tsa_identity,
    )
    app[STATUS] = services
    app[REVOCATION] = revocation
    tasks: list[asyncio.Task[None]] = []
    if settings.status_background_tasks:
        # The first start publishes at once, so the URLs in certificates resolve.
        await publisher.tick()
        await watcher.poll()
        tasks = [
            asyncio.create_task(publisher.run(), name="crl-publisher"),
            asyncio.create_task(watcher.run(), name="revocation-watcher"),
        ]
    yield
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
