"""The certificate registry: one way in. Every certificate the CA issues is
entered here, with its `cert.issue` event, inside the caller's transaction
(so a credential and its certificate exist together or not at all)."""

from __future__ import annotations

from datetime import datetime

from asn1crypto import x509
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from cloudsign.ca.authority import CertificateAuthority
from cloudsign.ca.identity import Identity
from cloudsign.ca.tables import certificates
from cloudsign.ca.x509 import serial_hex
from cloudsign.events import EventType, append_event


async def register(
    conn: AsyncConnection,
    cert: x509.Certificate,
    *,
    at: datetime,
    owner_id: str | None = None,
    credential_id: str | None = None,
    service: str | None = None,
) -> str:
    """Enter `cert` in the registry and log `cert.issue`; returns its serial."""
    serial = serial_hex(cert.serial_number)
    await conn.execute(
        certificates.insert().values(
            serial=serial,
            owner_id=owner_id,
            credential_id=credential_id,
            subject=cert.subject.human_friendly,
            issuer=cert.issuer.human_friendly,
            not_before=cert.not_valid_before,
            not_after=cert.not_valid_after,
            der=cert.dump(),
            status="good",
            issued_at=at,
        )
    )
    data = {"serial": serial} if service is None else {"serial": serial, "service": service}
    await append_event(
        conn,
        EventType.CERT_ISSUE,
        owner_id=owner_id,
        credential_id=credential_id,
        data=data,
        at=at,
    )
    return serial


async def is_registered(conn: AsyncConnection, serial: str) -> bool:
    found = await conn.execute(select(certificates.c.serial).where(certificates.c.serial == serial))
    return found.first() is not None


async def issue_and_register(
    ca: CertificateAuthority,
    conn: AsyncConnection,
    identity: Identity,
    spki_der: bytes,
    *,
    at: datetime,
    owner_id: str,
    credential_id: str,
) -> x509.Certificate:
    """An owner's certificate, signed in the HSM and registered in one call."""
    cert = await ca.issue(identity, spki_der, now=at)
    await register(conn, cert, at=at, owner_id=owner_id, credential_id=credential_id)
    return cert
