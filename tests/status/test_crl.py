"""CRLs over real HTTP: openssl verifies the complete, delta and root CRLs;
25-hour validity; a revocation shows in the delta at once and in the next
complete CRL; the daily schedule with an injected clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from asn1crypto import crl

from cloudsign.appkeys import CA, STATUS
from cloudsign.ca.x509 import to_pem
from cloudsign.status.crl import CrlPublisher
from cloudsign.status.services import StatusUrls, crl_policy
from cloudsign.storage import Database
from device_client.client import CloudsignClient
from tests.helpers import enrolled
from tests.status.status_helpers import chain_files, eventually, openssl_async, operator_revoke


async def _get_crl(http: aiohttp.ClientSession, url: str) -> tuple[bytes, crl.CertificateList]:
    async with http.get(url) as r:
        assert r.status == 200, url
        assert r.content_type == "application/pkix-crl"
        der = await r.read()
    return der, crl.CertificateList.load(der)


def _serials(cl: crl.CertificateList) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for entry in cl["tbs_cert_list"]["revoked_certificates"]:
        reason = entry.crl_reason_value
        out[format(entry["user_certificate"].native, "x")] = reason.native if reason else None
    return out


async def _openssl_crl_verify(path: Path, ca_file: Path) -> str:
    done = await openssl_async(
        "crl", "-in", str(path), "-inform", "DER", "-CAfile", str(ca_file), "-noout", "-verify"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


async def test_openssl_verifies_complete_delta_and_root_crls(
    http: aiohttp.ClientSession, base_url: str, app: Any, tmp_path: Path
) -> None:
    ca = app[CA]
    chain = tmp_path / "chain.pem"
    chain.write_text(to_pem(ca.issuing) + to_pem(ca.root))
    root = tmp_path / "root.pem"
    root.write_text(to_pem(ca.root))
    full_der, full = await _get_crl(http, f"{base_url}/pki/crl/issuing.crl")
    delta_der, delta = await _get_crl(http, f"{base_url}/pki/crl/issuing-delta.crl")
    root_der, root_crl = await _get_crl(http, f"{base_url}/pki/crl/root.crl")
    for name, der, ca_file in (
        ("full.crl", full_der, chain),
        ("delta.crl", delta_der, chain),
        ("root.crl", root_der, root),
    ):
        (tmp_path / name).write_bytes(der)
        assert "verify OK" in await _openssl_crl_verify(tmp_path / name, ca_file)

    tbs = full["tbs_cert_list"]
    assert tbs["version"].native == "v2"
    assert tbs["next_update"].native - tbs["this_update"].native == timedelta(hours=25)
    assert full.issuer.dump() == ca.issuing.subject.dump()
    assert full.crl_number_value.native >= 1
    assert full.delta_crl_indicator_value is None
    freshest = full.freshest_crl_value.native
    assert freshest[0]["distribution_point"] == [
        f"{app[STATUS].urls.base}/pki/crl/issuing-delta.crl"
    ]
    assert full.authority_key_identifier == ca.issuing.key_identifier

    assert delta.delta_crl_indicator_value.native == app[STATUS].crl.latest("issuing").number
    assert delta.crl_number_value.native > delta.delta_crl_indicator_value.native
    critical = {
        e["extn_id"].native
        for e in delta["tbs_cert_list"]["crl_extensions"]
        if e["critical"].native
    }
    assert critical == {"delta_crl_indicator"}

    rtbs = root_crl["tbs_cert_list"]
    assert root_crl.issuer.dump() == ca.root.subject.dump()
    assert rtbs["next_update"].native - rtbs["this_update"].native == timedelta(hours=25)

    # Each CRL stays retrievable by number.
    number = full.crl_number_value.native
    archived, _ = await _get_crl(http, f"{base_url}/pki/crl/issuing/{number}.crl")
    assert archived == full_der


async def test_revocation_in_delta_at_once_then_in_next_full(
    client: CloudsignClient, http: aiohttp.ClientSession, base_url: str, app: Any, tmp_path: Path
) -> None:
    _, cred = await enrolled(client)
    files = chain_files(tmp_path, cred)
    status, _ = await operator_revoke(http, base_url, files.serial, "key-compromise")
    assert status == 201

    async def delta() -> tuple[bytes, crl.CertificateList]:
        return await _get_crl(http, f"{base_url}/pki/crl/issuing-delta.crl")

    delta_der, delta_crl = await eventually(
        delta, lambda d: files.serial in _serials(d[1]), within=5
    )
    assert _serials(delta_crl)[files.serial] == "key_compromise"
    (tmp_path / "delta.crl").write_bytes(delta_der)
    await _openssl_crl_verify(tmp_path / "delta.crl", files.chain)
    _, full = await _get_crl(http, f"{base_url}/pki/crl/issuing.crl")
    assert files.serial not in _serials(full)

    # The next daily run: the complete CRL lists it, the new delta no longer does.
    await app[STATUS].crl.publish_full()
    await app[STATUS].crl.publish_delta()
    full_der, full = await _get_crl(http, f"{base_url}/pki/crl/issuing.crl")
    assert _serials(full)[files.serial] == "key_compromise"
    (tmp_path / "full.crl").write_bytes(full_der)
    text = await openssl_async(
        "crl", "-in", str(tmp_path / "full.crl"), "-inform", "DER", "-noout", "-text"
    )
    assert files.serial.upper() in text.stdout.upper(), text.stdout
    assert "Key Compromise" in text.stdout
    _, delta_crl = await delta()
    assert files.serial not in _serials(delta_crl)
    assert delta_crl.delta_crl_indicator_value.native == full.crl_number_value.native


class _Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def test_daily_schedule_with_injected_clock(app: Any, settings: Any, tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'schedule.db'}")
    await db.migrate()
    try:
        t0 = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)
        clock = _Clock(t0)
        urls = StatusUrls("http://crl.example")
        publisher = CrlPublisher(db, app[CA], crl_policy(settings.status, urls), clock=clock)

        first = await publisher.tick()
        assert [(p.scope, p.kind) for p in first] == [
            ("issuing", "full"),
            ("issuing", "delta"),
            ("root", "full"),
        ]
        assert [p.number for p in first] == [1, 2, 1]
        assert first[0].next_update - first[0].this_update == timedelta(hours=25)

        clock.now = t0 + timedelta(minutes=30)
        assert await publisher.tick() == []
        clock.now = t0 + timedelta(minutes=61)
        hourly = await publisher.tick()
        assert [(p.kind, p.number, p.base_number) for p in hourly] == [("delta", 3, 1)]
        clock.now = t0 + timedelta(minutes=62)
        publisher.revoked("abc")  # a revocation makes the next tick publish a delta
        assert [p.kind for p in await publisher.tick()] == ["delta"]
        clock.now = t0 + timedelta(hours=24)
        daily = await publisher.tick()
        assert [(p.scope, p.kind, p.number) for p in daily] == [
            ("issuing", "full", 5),
            ("issuing", "delta", 6),
            ("root", "full", 2),
        ]
        # A restarted publisher carries on from the stored CRLs.
        again = CrlPublisher(db, app[CA], crl_policy(settings.status, urls), clock=clock)
        await again.load()
        assert await again.tick() == []
        latest = again.latest("issuing")
        assert latest is not None and latest.number == 5
    finally:
        await db.close()
