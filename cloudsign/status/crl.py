"""Certificate revocation lists (RFC 5280 §5), signed in the HSM.

Per scope, one CRL-number sequence shared by complete and delta CRLs:
- `issuing`: the citizens' (and the OCSP/TSA) certificates, signed by the
  issuing CA key. A complete CRL every `crl_interval_hours` valid
  `crl_validity_hours` (policy: daily, 25 h) carrying freshestCRL -> the
  delta URL; delta CRLs (deltaCRLIndicator = base number) at least every
  `delta_crl_interval_minutes` and promptly after each revocation.
- `root`: the CA certificates the root signed, signed by the root key; a
  complete CRL on the same daily schedule.

Every CRL issued is stored (`crls` table) and stays retrievable by number:
the official notice of a revocation is its publication in a CRL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from asn1crypto import algos, crl, x509
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from cloudsign.ca import (
    ROOT_LABEL,
    CertificateAuthority,
    HsmKeySigner,
    certificates,
    key_identifier,
)
from cloudsign.clock import Clock
from cloudsign.status.reasons import RevocationReason
from cloudsign.status.tables import crls
from cloudsign.storage import Database
from hsm_bridge import HsmError

log = logging.getLogger(__name__)

ISSUING: Final = "issuing"
ROOT: Final = "root"
#: How often the publisher looks whether something is due.
CHECK_INTERVAL_SECONDS: Final = 30.0
#: How often a process that does not publish reloads the latest CRLs.
FOLLOW_SECONDS: Final = 5.0
#: Revocations arriving this close together go into one delta CRL.
DEBOUNCE_SECONDS: Final = 0.1
NUMBER_RETRIES: Final = 5


@dataclass(frozen=True)
class CrlPolicy:
    interval: timedelta
    validity: timedelta
    delta_interval: timedelta
    delta_url: str

    @property
    def delta_validity(self) -> timedelta:
        # One missed delta run is tolerated before relying parties see it stale.
        return 2 * self.delta_interval


@dataclass(frozen=True)
class PublishedCrl:
    scope: str
    number: int
    kind: str  # full | delta
    base_number: int | None
    this_update: datetime
    next_update: datetime
    entries: int
    der: bytes

    @classmethod
    def from_row(cls, row: Any) -> PublishedCrl:
        return cls(
            scope=row.scope,
            number=row.crl_number,
            kind=row.kind,
            base_number=row.base_crl_number,
            this_update=row.this_update,
            next_update=row.next_update,
            entries=row.entries,
            der=bytes(row.der),
        )


def crl_time(value: datetime) -> x509.Time:
    # RFC 5280 §5.1.2.4: UTCTime through 2049.
    if value.year >= 2050:
        return x509.Time({"general_time": value})
    return x509.Time({"utc_time": value})


@dataclass(frozen=True)
class _Entry:
    serial: str
    revoked_at: datetime
    reason: str | None

    def asn1(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "user_certificate": int(self.serial, 16),
            "revocation_date": crl_time(self.revoked_at.replace(microsecond=0)),
        }
        # RFC 5280 §5.3.1: reasonCode unspecified SHOULD be absent.
        if self.reason and self.reason != RevocationReason.UNSPECIFIED.value:
            entry["crl_entry_extensions"] = [
                {"extn_id": "crl_reason", "critical": False, "extn_value": self.reason}
            ]
        return entry


class CrlPublisher:
    """Builds, signs, stores and serves the CRLs of both scopes."""

    def __init__(
        self,
        db: Database,
        ca: CertificateAuthority,
        policy: CrlPolicy,
        *,
        clock: Clock,
    ) -> None:
        self.db = db
        self.ca = ca
        self.policy = policy
        self.clock = clock
        self.root_signer = HsmKeySigner(ca.bridge, ROOT_LABEL, ca.profile.algorithm)
        self._latest: dict[tuple[str, str], PublishedCrl] = {}
        self._base_serials: tuple[int, frozenset[str]] | None = None
        self._dirty = False
        self._wake = asyncio.Event()
        self._followed = asyncio.Event()
        self._lock = asyncio.Lock()

    # -- serving -----------------------------------------------------------

    def latest(self, scope: str, kind: str = "full") -> PublishedCrl | None:
        return self._latest.get((scope, kind))

    async def by_number(self, scope: str, number: int) -> PublishedCrl | None:
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(crls).where(crls.c.scope == scope, crls.c.crl_number == number)
                )
            ).first()
        return PublishedCrl.from_row(row) if row is not None else None

    async def load(self) -> None:
        """The latest stored CRLs (after a restart nothing is re-signed early)."""
        async with self.db.read() as conn:
            for scope in (ISSUING, ROOT):
                for kind in ("full", "delta"):
                    row = (
                        await conn.execute(
                            select(crls)
                            .where(crls.c.scope == scope, crls.c.kind == kind)
                            .order_by(crls.c.crl_number.desc())
                            .limit(1)
                        )
                    ).first()
                    if row is not None:
                        self._latest[(scope, kind)] = PublishedCrl.from_row(row)

    # -- revocation listener ---------------------------------------------------

    def revoked(self, serial: str) -> None:
        self._dirty = True
        self._wake.set()
        self._followed.set()

    # -- building ----------------------------------------------------------

    async def _revoked_entries(self) -> list[_Entry]:
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    select(
                        certificates.c.serial,
                        certificates.c.revoked_at,
                        certificates.c.revocation_reason,
                    )
                    .where(certificates.c.status == "revoked")
                    .order_by(certificates.c.revoked_at, certificates.c.serial)
                )
            ).all()
        return [_Entry(s, at, reason) for s, at, reason in rows if at is not None]

    def _signer(self, scope: str) -> tuple[HsmKeySigner, x509.Certificate]:
        if scope == ROOT:
            return self.root_signer, self.ca.root
        return self.ca.issuing_signer, self.ca.issuing

    async def _issue(
        self,
        scope: str,
        kind: str,
        entries: list[_Entry],
        now: datetime,
        base_number: int | None = None,
    ) -> PublishedCrl:
        signer, issuer_cert = self._signer(scope)
        this_update = now.replace(microsecond=0)
        if kind == "full":
            next_update = this_update + self.policy.validity
        else:
            next_update = this_update + self.policy.delta_validity
        sig_alg = algos.SignedDigestAlgorithm({"algorithm": signer.signature_algorithm})
        for attempt in range(NUMBER_RETRIES):
            try:
                async with self.db.transaction() as conn:
                    current = (
                        await conn.execute(
                            select(func.max(crls.c.crl_number)).where(crls.c.scope == scope)
                        )
                    ).scalar_one()
                    number = (current or 0) + 1
                    extensions: list[dict[str, Any]] = [
                        {
                            "extn_id": "authority_key_identifier",
                            "critical": False,
                            "extn_value": {
                                "key_identifier": key_identifier(issuer_cert.public_key)
                            },
                        },
                        {"extn_id": "crl_number", "critical": False, "extn_value": number},
                    ]
                    if kind == "delta":
                        extensions.append(
                            {
                                "extn_id": "delta_crl_indicator",
                                "critical": True,
                                "extn_value": base_number,
                            }
                        )
                    elif scope == ISSUING:
                        extensions.append(
                            {
                                "extn_id": "freshest_crl",
                                "critical": False,
                                "extn_value": [
                                    {
                                        "distribution_point": {
                                            "full_name": [
                                                x509.GeneralName(
                                                    name="uniform_resource_identifier",
                                                    value=self.policy.delta_url,
                                                )
                                            ]
                                        }
                                    }
                                ],
                            }
                        )
                    tbs: dict[str, Any] = {
                        "version": "v2",
                        "signature": sig_alg,
                        "issuer": issuer_cert.subject,
                        "this_update": crl_time(this_update),
                        "next_update": crl_time(next_update),
                        "crl_extensions": extensions,
                    }
                    if entries:
                        tbs["revoked_certificates"] = [e.asn1() for e in entries]
                    tbs_list = crl.TbsCertList(tbs)
                    signature = await signer.sign(tbs_list.dump())
                    der = crl.CertificateList(
                        {
                            "tbs_cert_list": tbs_list,
                            "signature_algorithm": sig_alg,
                            "signature": signature,
                        }
                    ).dump()
                    await conn.execute(
                        crls.insert().values(
                            scope=scope,
                            crl_number=number,
                            kind=kind,
                            base_crl_number=base_number,
                            this_update=this_update,
                            next_update=next_update,
                            entries=len(entries),
                            der=der,
                        )
                    )
            except IntegrityError:
                # Another process took this number; take the next one.
                log.info("CRL number race on %s, retrying (%d)", scope, attempt + 1)
                continue
            published = PublishedCrl(
                scope, number, kind, base_number, this_update, next_update, len(entries), der
            )
            self._latest[(scope, kind)] = published
            log.info("published %s %s CRL #%d (%d entries)", scope, kind, number, len(entries))
            return published
        raise SQLAlchemyError(f"could not allocate a CRL number for {scope}")

    async def publish_full(self, scope: str = ISSUING, now: datetime | None = None) -> PublishedCrl:
        async with self._lock:
            now = now or self.clock()
            if scope == ROOT:
                # The root signs only the issuing CA's certificate; revoking a CA
                # certificate is a ceremony outside this service.
                return await self._issue(ROOT, "full", [], now)
            entries = await self._revoked_entries()
            published = await self._issue(ISSUING, "full", entries, now)
            self._base_serials = (published.number, frozenset(e.serial for e in entries))
            return published

    async def publish_delta(self, now: datetime | None = None) -> PublishedCrl:
        """Revocations since the latest complete CRL; publishes one if none."""
        async with self._lock:
            now = now or self.clock()
            base = self.latest(ISSUING, "full")
            if base is None:
                raise LookupError("no complete CRL to base a delta on")
            self._dirty = False
            in_base = self._serials_of(base)
            entries = [e for e in await self._revoked_entries() if e.serial not in in_base]
            return await self._issue(ISSUING, "delta", entries, now, base_number=base.number)

    def _serials_of(self, base: PublishedCrl) -> frozenset[str]:
        if self._base_serials is None or self._base_serials[0] != base.number:
            parsed = crl.CertificateList.load(base.der)
            serials = frozenset(
                format(e["user_certificate"].native, "x")
                for e in parsed["tbs_cert_list"]["revoked_certificates"]
            )
            self._base_serials = (base.number, serials)
        return self._base_serials[1]

    # -- schedule ----------------------------------------------------------

    async def tick(self, now: datetime | None = None) -> list[PublishedCrl]:
        """Publish whatever is due at `now`; returns what was published."""
        now = now or self.clock()
        done: list[PublishedCrl] = []
        full = self.latest(ISSUING, "full")
        if full is None or now >= full.this_update + self.policy.interval:
            done.append(await self.publish_full(ISSUING, now))
            done.append(await self.publish_delta(now))
        else:
            delta = self.latest(ISSUING, "delta")
            if (
                self._dirty
                or delta is None
                or delta.base_number != full.number
                or now >= delta.this_update + self.policy.delta_interval
            ):
                done.append(await self.publish_delta(now))
        root = self.latest(ROOT, "full")
        if root is None or now >= root.this_update + self.policy.interval:
            done.append(await self.publish_full(ROOT, now))
        return done

    async def follow(self) -> None:
        """Every process: reload the latest stored CRLs (the leader's), every
        `FOLLOW_SECONDS` and soon after a revocation this process heard of."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._followed.wait(), timeout=FOLLOW_SECONDS)
                # The leader publishes a delta within its debounce; give it a moment.
                await asyncio.sleep(1.0)
            self._followed.clear()
            try:
                await self.load()
            except (SQLAlchemyError, OSError) as e:
                log.warning("CRL reload failed, will retry: %s", e)

    async def run(self) -> None:
        while True:
            try:
                await self.tick()
            except (HsmError, SQLAlchemyError, OSError) as e:
                log.warning("CRL publication failed, will retry: %s", e)
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=CHECK_INTERVAL_SECONDS)
                await asyncio.sleep(DEBOUNCE_SECONDS)
            except TimeoutError:
                pass
            self._wake.clear()
