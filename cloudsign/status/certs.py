"""The status services' own certificates: the delegated OCSP responder and
the time-stamping unit. Both keys are generated in the HSM; the certificates
are issued by the issuing CA, kept as PEM in `<data_dir>/pki/` and entered
in the certificate registry like any other certificate.

Created on first start; re-issued (same HSM key) when missing or within
`RENEW_BEFORE` of expiry, at start-up and while the service runs: the
leader re-issues (`ensure_service_identity`, checked every
`RENEW_CHECK_INTERVAL`), and every process takes up the newest registered
certificate of its key (`registered_service_certificate`), so a renewal
made by one process reaches the others' OCSP answers and time-stamps
without a restart, on any machine sharing the database.
"""

from __future__ import annotations

import asyncio
import enum
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

from asn1crypto import keys, pem, x509
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from cloudsign.ca import (
    BACKDATE,
    CertificateAuthority,
    HsmKeySigner,
    build_certificate,
    certificates,
    is_registered,
    new_serial,
    register,
    serial_hex,
    to_pem,
)
from cloudsign.storage import Database
from hsm_bridge import KeyAlgorithm, ServiceKeys

SERVICE_CERT_VALIDITY: Final = timedelta(days=365)
RENEW_BEFORE: Final = timedelta(days=30)
#: How often the leader checks whether a certificate is due, and every
#: process looks for a newer registered one.
RENEW_CHECK_INTERVAL: Final = timedelta(hours=1)


class ServiceRole(enum.StrEnum):
    OCSP = "ocsp"
    TSA = "tsa"

    @property
    def label(self) -> str:
        """HSM key label."""
        return {ServiceRole.OCSP: "ocsp-responder", ServiceRole.TSA: "tsa-unit"}[self]

    @property
    def common_name(self) -> str:
        return {ServiceRole.OCSP: "OCSP Responder", ServiceRole.TSA: "Time-Stamping Unit"}[self]

    def file(self, pki_dir: Path) -> Path:
        return pki_dir / f"{self.value}.pem"


@dataclass(frozen=True)
class ServiceIdentity:
    """A service's certificate and the HSM signer behind it."""

    role: ServiceRole
    certificate: x509.Certificate
    signer: HsmKeySigner


def _uri(url: str) -> x509.GeneralName:
    return x509.GeneralName(name="uniform_resource_identifier", value=url)


def _extensions(role: ServiceRole, ca: CertificateAuthority) -> list[dict[str, Any]]:
    urls = ca.profile.urls
    common: list[dict[str, Any]] = [
        {"extn_id": "basic_constraints", "critical": True, "extn_value": {"ca": False}},
    ]
    if role is ServiceRole.OCSP:
        return [
            *common,
            {"extn_id": "key_usage", "critical": True, "extn_value": {"digital_signature"}},
            {"extn_id": "extended_key_usage", "critical": False, "extn_value": ["ocsp_signing"]},
            # RFC 6960 §4.2.2.2.1: relying parties need not check this certificate.
            {"extn_id": "ocsp_no_check", "critical": False, "extn_value": None},
            {
                "extn_id": "authority_information_access",
                "critical": False,
                "extn_value": [
                    {"access_method": "ca_issuers", "access_location": _uri(urls.issuing_cert)}
                ],
            },
        ]
    return [
        *common,
        {
            "extn_id": "key_usage",
            "critical": True,
            "extn_value": {"digital_signature", "non_repudiation"},
        },
        # RFC 3161 §2.3: exactly one, critical, extendedKeyUsage timeStamping.
        {"extn_id": "extended_key_usage", "critical": True, "extn_value": ["time_stamping"]},
        {
            "extn_id": "certificate_policies",
            "critical": False,
            "extn_value": [{"policy_identifier": ca.profile.policy_oid}],
        },
        {
            "extn_id": "crl_distribution_points",
            "critical": False,
            "extn_value": [{"distribution_point": {"full_name": [_uri(urls.crl)]}}],
        },
        {
            "extn_id": "authority_information_access",
            "critical": False,
            "extn_value": [
                {"access_method": "ocsp", "access_location": _uri(urls.ocsp)},
                {"access_method": "ca_issuers", "access_location": _uri(urls.issuing_cert)},
            ],
        },
    ]


def _read(path: Path) -> x509.Certificate | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    if pem.detect(data):
        _, _, data = pem.unarmor(data)
    return x509.Certificate.load(data)


def _write(path: Path, cert: x509.Certificate) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(to_pem(cert))
    os.replace(tmp, path)


async def ensure_service_keys(bridge: ServiceKeys, algorithm: KeyAlgorithm) -> list[str]:
    """The OCSP responder's and the TSA's key pairs, generated if missing;
    returns the labels it generated. Run once before the processes start
    (`cloudsign.instance.initialise`): processes started together each
    finding no key would each generate one."""
    made = []
    for role in ServiceRole:
        if not await bridge.has_key(role.label):
            await bridge.generate_signing_key(role.label, algorithm)
            made.append(role.label)
    return made


async def ensure_service_identity(
    role: ServiceRole,
    bridge: ServiceKeys,
    ca: CertificateAuthority,
    pki_dir: Path,
    db: Database,
    *,
    now: datetime,
) -> ServiceIdentity:
    """The role's key and certificate, creating or renewing what is missing.

    One process at a time, across every process and machine on the database
    (`Database.exclusive`): processes started together on a fresh data dir
    each found no certificate, each issued one and raced to register it. A
    certificate another process (or machine) already registered for the key
    is taken up instead of issuing one more."""
    now = now.replace(microsecond=0)
    algorithm = ca.profile.algorithm
    signer = HsmKeySigner(bridge, role.label, algorithm)
    async with db.exclusive(f"service-identity:{role.value}") as conn:
        cert = await asyncio.to_thread(_read, role.file(pki_dir))
        if await bridge.has_key(role.label):
            spki_der = await bridge.public_key_info(role.label, algorithm)
        else:
            spki_der = await bridge.generate_signing_key(role.label, algorithm)
            cert = None
        if _due(cert, spki_der, ca, now):
            cert = await _newest_registered(conn, spki_der, ca, now)
        if cert is None or _due(cert, spki_der, ca, now):
            cert = await _issue(role, ca, spki_der, now)
        if cert.dump() != _dump(await asyncio.to_thread(_read, role.file(pki_dir))):
            await asyncio.to_thread(_write, role.file(pki_dir), cert)
        if not await is_registered(conn, serial_hex(cert.serial_number)):
            # Entered once, so OCSP and the CRL cover it like any certificate the CA issued.
            await register(conn, cert, at=now, service=role.value)
    return ServiceIdentity(role, cert, signer)


def _due(
    cert: x509.Certificate | None, spki_der: bytes, ca: CertificateAuthority, now: datetime
) -> bool:
    """No certificate for this key from this issuer, or one within RENEW_BEFORE of its end."""
    return (
        cert is None
        or cert.public_key.dump() != spki_der
        or cert.issuer.dump() != ca.issuing.subject.dump()
        or cert.not_valid_after - RENEW_BEFORE <= now
    )


def _dump(cert: x509.Certificate | None) -> bytes | None:
    return None if cert is None else cert.dump()


async def _issue(
    role: ServiceRole, ca: CertificateAuthority, spki_der: bytes, now: datetime
) -> x509.Certificate:
    return await build_certificate(
        signer=ca.issuing_signer,
        issuer=ca.issuing.subject,
        issuer_spki=ca.issuing.public_key,
        subject=x509.Name.build(
            {
                "country_name": "KZ",
                "organization_name": ca.profile.organisation,
                "common_name": f"{ca.profile.name} {role.common_name}",
            }
        ),
        subject_spki=keys.PublicKeyInfo.load(spki_der),
        serial=new_serial(),
        not_before=now - BACKDATE,
        not_after=min(now + SERVICE_CERT_VALIDITY, ca.issuing.not_valid_after),
        extensions=_extensions(role, ca),
    )


async def registered_service_certificate(
    role: ServiceRole,
    bridge: ServiceKeys,
    ca: CertificateAuthority,
    db: Database,
    *,
    now: datetime,
) -> x509.Certificate | None:
    """The newest good certificate in the registry for the role's HSM key,
    issued by the issuing CA and valid now (what another process renewed)."""
    spki_der = await bridge.public_key_info(role.label, ca.profile.algorithm)
    async with db.read() as conn:
        return await _newest_registered(conn, spki_der, ca, now)


async def _newest_registered(
    conn: AsyncConnection, spki_der: bytes, ca: CertificateAuthority, now: datetime
) -> x509.Certificate | None:
    rows = await conn.execute(
        select(certificates.c.der)
        .where(
            certificates.c.owner_id.is_(None),
            certificates.c.credential_id.is_(None),
            certificates.c.status == "good",
            certificates.c.not_before <= now,
            certificates.c.not_after > now,
        )
        .order_by(certificates.c.not_after.desc(), certificates.c.not_before.desc())
    )
    for (der,) in rows:
        cert = x509.Certificate.load(bytes(der))
        if cert.public_key.dump() == spki_der and cert.issuer.dump() == ca.issuing.subject.dump():
            return cert
    return None
