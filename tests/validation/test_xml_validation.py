"""XML signatures in the validation service (`POST /api/v1/validate`,
`signature` given as the XML document): XAdES B-B and B-T made by this
service pass with their signer, signing time, time-stamp and chain; a changed
document fails on the hash and a changed signature value on the maths; a
signature made after the certificate was revoked fails (REVOKED) when its
time-stamp proves it, and is INDETERMINATE (REVOKED_NO_POE) without one; an
XML signed by Debian's xmlsec1 under a test CA this service does not know
finds no chain; hostile XML is a clear 4xx, nothing is fetched, and the
service keeps serving."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import aiohttp
from asn1crypto import pem, x509
from lxml import etree

from cloudsign.appkeys import CA, SIGNING, STATUS
from cloudsign.signing.cms import LevelServices
from cloudsign.signing.xades import xades_enveloped
from device_client.client import CloudsignClient
from hsm_bridge import HashAlgorithm, SignatureScheme
from tests.helpers import authorize_documents, enrolled, passed_face_check
from tests.xml_attacks import BILLION_LAUGHS, fetch_counter

PASSWORD = "correct horse battery"
NS = {
    "ds": "http://www.w3.org/2000/09/xmldsig#",
    "xades": "http://uri.etsi.org/01903/v1.3.2#",
}
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
#: How long a subprocess (xmlsec1, openssl) may take.
TOOL_TIMEOUT_SECONDS = 60.0


def _order(number: int, amount: str = "125000.00") -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<payment xmlns="urn:example:kz:payments" number="{number}">\n'
        '  <payer iin="900101300123">Asel Nurlanovna</payer>\n'
        f'  <amount currency="KZT">{amount}</amount>\n'
        "  <purpose>Оплата по договору № 7</purpose>\n"
        "</payment>\n"
    ).encode()


def _cert(text: str) -> x509.Certificate:
    return x509.Certificate.load(pem.unarmor(text.encode())[2])


async def _validate(
    http: aiohttp.ClientSession, base_url: str, **fields: Any
) -> tuple[int, dict[str, Any]]:
    body = {
        k: base64.b64encode(v).decode() if isinstance(v, bytes) else v for k, v in fields.items()
    }
    async with http.post(f"{base_url}/api/v1/validate", json=body) as resp:
        return resp.status, await resp.json(content_type=None)


async def _alive(http: aiohttp.ClientSession, base_url: str) -> None:
    async with http.get(f"{base_url}/healthz") as resp:
        assert resp.status == 200


def _only(report: dict[str, Any]) -> dict[str, Any]:
    (signature,) = report["signatures"]
    return signature


async def _sign_xml(
    client: CloudsignClient, cred: dict[str, Any], sad: str, document: bytes, level: str
) -> bytes:
    _id, signed = await client.sign_document(
        cred["credential_id"],
        sad,
        document=document,
        signature_format="xades",
        name="payment.xml",
        level=level,
    )
    return signed


def _with_signature_value_changed(signed: bytes) -> bytes:
    root = etree.fromstring(signed, parser=etree.XMLParser(resolve_entities=False))
    value = root.find("ds:Signature/ds:SignatureValue", NS)
    raw = bytearray(base64.b64decode(value.text))
    raw[len(raw) // 2] ^= 0x01
    value.text = base64.b64encode(bytes(raw)).decode()
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


async def test_service_xades_b_and_t_pass_and_changes_fail(
    client: CloudsignClient, app: Any, http: aiohttp.ClientSession, base_url: str
) -> None:
    totp, cred = await enrolled(client)
    certificate, root = _cert(cred["certificate"]), _cert(cred["chain"][-1])
    doc_b, doc_t = _order(1), _order(2)
    sad = await authorize_documents(client, totp, cred, [doc_b, doc_t])
    signed_b = await _sign_xml(client, cred, sad, doc_b, "B")
    signed_t = await _sign_xml(client, cred, sad, doc_t, "T")

    for signed, level in ((signed_b, "B-B"), (signed_t, "B-T")):
        status, report = await _validate(http, base_url, signature=signed)
        assert status == 200, report
        assert (report["indication"], report["sub_indication"]) == ("TOTAL-PASSED", None), report
        assert report["format"] == "XAdES"
        sig = _only(report)
        assert sig["level"] == level
        assert sig["signer"]["serial"] == format(certificate.serial_number, "x")
        assert sig["signer"]["subject"] == certificate.subject.human_friendly
        assert len(sig["chain"]) == 3 and sig["chain"][0]["serial"] == sig["signer"]["serial"]
        assert sig["chain"][-1]["subject"] == root.subject.human_friendly
        assert sig["checks"] == {"intact": True, "signature_valid": True, "trusted": True}
        assert sig["revocation"]["status"] == "good"
        assert sig["digest_algorithm"] == "sha256"
        # The XAdES SigningTime, as the service wrote it.
        written = etree.fromstring(signed).find(".//xades:SigningTime", NS).text
        assert sig["claimed_signing_time"] is not None
        assert sig["claimed_signing_time"][:19] == written[:19]
        # Covered: the whole document (URI "" with the enveloped-signature
        # transform), the signed properties and the key info.
        coverage = sig["coverage"]
        assert coverage["whole_document"] is True
        uris = [r["uri"] for r in coverage["references"]]
        assert len(uris) == 3 and uris[0] == "" and all(u.startswith("#") for u in uris[1:])
        assert ENVELOPED in coverage["references"][0]["transforms"]
        assert coverage["references"][1]["type"] == "http://uri.etsi.org/01903#SignedProperties"

    # B-B: no time-stamp, judged now. B-T: the time-stamp verified (its
    # imprint over the exclusive-c14n SignatureValue, the TSA's chain) and
    # the certificate judged at its time.
    _s, report_b = await _validate(http, base_url, signature=signed_b)
    assert _only(report_b)["signature_timestamp"] is None
    _s, report_t = await _validate(http, base_url, signature=signed_t)
    stamp = _only(report_t)["signature_timestamp"]
    assert stamp["verified"] is True
    assert stamp["tsa"] == app[STATUS].tsa_identity.certificate.subject.human_friendly
    assert _only(report_t)["revocation"]["checked_at"] == stamp["time"]

    # The document changed: the reference's digest fails.
    tampered = signed_t.replace(b"125000.00", b"925000.00")
    assert tampered != signed_t
    status, report = await _validate(http, base_url, signature=tampered)
    assert status == 200, report
    assert (report["indication"], report["sub_indication"]) == ("TOTAL-FAILED", "HASH_FAILURE")
    assert _only(report)["checks"]["intact"] is False

    # The signature value changed: the maths fail.
    status, report = await _validate(
        http, base_url, signature=_with_signature_value_changed(signed_b)
    )
    assert status == 200, report
    assert (report["indication"], report["sub_indication"]) == (
        "TOTAL-FAILED",
        "SIG_CRYPTO_FAILURE",
    ), report

    # The time-stamp token moved onto another signature: its imprint is
    # over the other SignatureValue, so it is not taken as proof of time.
    t_root = etree.fromstring(signed_t)
    b_root = etree.fromstring(signed_b)
    token = t_root.find(".//xades:UnsignedProperties", NS)
    b_root.find("ds:Signature/ds:Object/xades:QualifyingProperties", NS).append(token)
    grafted = bytes(etree.tostring(b_root, xml_declaration=True, encoding="UTF-8"))
    status, report = await _validate(http, base_url, signature=grafted)
    assert status == 200, report
    assert _only(report)["signature_timestamp"]["verified"] is False
    assert _only(report)["revocation"]["checked_at"] != _only(report)["signature_timestamp"]["time"]

    # A content or a hash beside an enveloped XML signature: refused.
    status, report = await _validate(http, base_url, signature=signed_b, content=doc_b)
    assert status == 400 and report["reason"] == "malformed", report


async def test_xades_after_revocation(
    client: CloudsignClient, app: Any, http: aiohttp.ClientSession, base_url: str
) -> None:
    """Signed after the certificate was revoked, the key used anyway through
    the SAD store (as a thief would): B-T's time-stamp proves it was made
    after the revocation, TOTAL-FAILED/REVOKED; B-B has nothing to prove
    when it was made, INDETERMINATE/REVOKED_NO_POE."""
    totp, cred = await enrolled(client)
    doc_b, doc_t = _order(3), _order(4)
    sad = await authorize_documents(client, totp, cred, [doc_b, doc_t])
    signing, ca = app[SIGNING], app[CA]
    auth = await signing.sads.find(
        sad, owner_id=client.owner_id, credential_id=cred["credential_id"]
    )
    face = await passed_face_check(client)
    wrapped = await client.wrap_password(PASSWORD, "authorize")
    revoked = await client.request(
        "POST",
        f"/api/v1/me/credentials/{cred['credential_id']}/revoke",
        {
            "password_key": wrapped.to_json(),
            "otp": await totp.fresh_code(),
            "face_challenge_id": face,
            "reason": "key-compromise",
        },
    )
    assert revoked["status"] == "revoked"
    certificate = _cert(cred["certificate"])

    async def sign_anyway(digest: bytes, h: HashAlgorithm, scheme: SignatureScheme) -> bytes:
        (signature,) = await signing.sads.sign(auth, sad, [digest], h, scheme)
        return bytes(signature)

    async def thief(document: bytes, level: str) -> bytes:
        services = LevelServices(f"{base_url}/tsa", (ca.root,), (ca.issuing,))
        made: bytes = await signing.documents.run(
            lambda session: xades_enveloped(
                sign_anyway,
                auth.credential_id,
                certificate,
                ca.chain,
                document,
                signing_time=signing.clock(),
                session=session,
                level=level,
                services=services,
            )
        )
        return made

    late_t = await asyncio.wait_for(thief(doc_t, "T"), 60)
    late_b = await asyncio.wait_for(thief(doc_b, "B"), 60)

    status, report = await _validate(http, base_url, signature=late_t)
    assert status == 200, report
    assert (report["indication"], report["sub_indication"]) == ("TOTAL-FAILED", "REVOKED"), report
    sig = _only(report)
    assert sig["level"] == "B-T"
    assert sig["checks"]["intact"] and sig["checks"]["signature_valid"]
    assert sig["signature_timestamp"]["verified"] is True
    assert sig["revocation"]["status"] == "revoked"
    assert sig["revocation"]["reason"] == "key_compromise"
    assert sig["revocation"]["revoked_at"] <= sig["signature_timestamp"]["time"]

    status, report = await _validate(http, base_url, signature=late_b)
    assert status == 200, report
    assert (report["indication"], report["sub_indication"]) == (
        "INDETERMINATE",
        "REVOKED_NO_POE",
    ), report
    assert _only(report)["level"] == "B-B"
    assert _only(report)["revocation"]["status"] == "revoked"


async def _run(*argv: str | Path) -> tuple[int, str]:
    """A command, awaited (never blocking the loop the server runs on)."""
    proc = await asyncio.create_subprocess_exec(
        *map(str, argv), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), TOOL_TIMEOUT_SECONDS)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode or 0, out.decode(errors="replace")


async def _openssl(*args: str | Path) -> None:
    code, out = await _run("openssl", *args)
    assert code == 0, out


TEMPLATE = b"""<?xml version="1.0" encoding="UTF-8"?>
<invoice xmlns="urn:example:elsewhere">
  <total currency="EUR">42.00</total>
  <Signature xmlns="http://www.w3.org/2000/09/xmldsig#">
    <SignedInfo>
      <CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>
      <SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"/>
      <Reference URI="">
        <Transforms>
          <Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>
          <Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>
        </Transforms>
        <DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>
        <DigestValue/>
      </Reference>
    </SignedInfo>
    <SignatureValue/>
    <KeyInfo><X509Data><X509Certificate/></X509Data></KeyInfo>
  </Signature>
</invoice>
"""


async def test_xmlsec1_signature_under_an_unknown_ca_finds_no_chain(
    http: aiohttp.ClientSession, base_url: str, tmp_path: Path
) -> None:
    """Debian's xmlsec1 signs with a key and certificate from a test CA made
    by openssl: the maths hold, no chain to this CA's root."""
    ca_key, ca, key, csr, leaf = (tmp_path / n for n in ("ca.key", "ca.pem", "k", "csr", "leaf"))
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
    await _openssl(
        "req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-subj", "/CN=Elsewhere XML CA"
    )
    await _openssl("req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=Somebody Else")
    await _openssl(
        "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-set_serial", "9", "-days", "2",
        "-out", leaf,
    )  # fmt: skip
    template, signed = tmp_path / "template.xml", tmp_path / "signed.xml"
    template.write_bytes(TEMPLATE)
    code, out = await _run(
        "xmlsec1", "--sign", "--privkey-pem", f"{key},{leaf}", "--output", signed, template
    )
    assert code == 0, out
    code, out = await _run("xmlsec1", "--verify", "--trusted-pem", ca, signed)
    assert code == 0, out  # the independent tool's own signature holds under its own CA

    status, report = await _validate(http, base_url, signature=signed.read_bytes())
    assert status == 200, report
    assert (report["indication"], report["sub_indication"]) == (
        "INDETERMINATE",
        "NO_CERTIFICATE_CHAIN_FOUND",
    ), report
    assert report["format"] == "XMLDSig"
    sig = _only(report)
    assert sig["checks"]["intact"] and sig["checks"]["signature_valid"]
    assert sig["signer"]["subject"] == "Common Name: Somebody Else"
    assert sig["chain"] == [] and sig["level"] is None
    assert sig["claimed_signing_time"] is None and sig["signature_timestamp"] is None
    assert sig["coverage"]["whole_document"] is True

    # The same signature over a changed total: the hash fails whoever the CA.
    changed = signed.read_bytes().replace(b"42.00", b"92.00")
    status, report = await _validate(http, base_url, signature=changed)
    assert (report["indication"], report["sub_indication"]) == ("TOTAL-FAILED", "HASH_FAILURE")


def _hostile(url: str) -> list[tuple[str, bytes, int, str]]:
    """(what, document, status, reason)"""
    deep = b"<a>" * 100_000 + b"</a>" * 100_000
    return [
        ("billion laughs", BILLION_LAUGHS, 400, "malformed"),
        (
            "external entity (file)",
            b'<?xml version="1.0"?>\n<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n'
            b"<r>&x;</r>\n",
            400,
            "malformed",
        ),
        (
            "external entity (network)",
            b'<?xml version="1.0"?>\n'
            + f'<!DOCTYPE r [<!ENTITY x SYSTEM "{url}/entity">]>\n'.encode()
            + b"<r>&x;</r>\n",
            400,
            "malformed",
        ),
        ("external DTD", f'<!DOCTYPE r SYSTEM "{url}/r.dtd">\n<r>&leak;</r>\n'.encode(),
         400, "malformed"),
        (
            "UTF-16 DTD",
            '<?xml version="1.0" encoding="UTF-16"?>\n'
            '<!DOCTYPE r [<!ENTITY a "aaaaaaaaaa">]><r>&a;</r>'.encode("utf-16"),
            400,
            "malformed",
        ),
        ("nested 100000 deep", deep, 400, "too_deep"),
        ("undeclared entity", b"<r>&nbsp;</r>", 400, "malformed"),
        ("truncated", _order(5)[:60], 400, "malformed"),
        ("no signature", _order(6), 422, "no_signature"),
    ]  # fmt: skip


async def test_hostile_xml_is_a_clear_4xx_and_nothing_is_fetched(
    http: aiohttp.ClientSession, base_url: str
) -> None:
    runner, url, hits = await fetch_counter()
    try:
        for what, document, expected, reason in _hostile(url):
            status, report = await _validate(http, base_url, signature=document)
            assert status == expected, (what, status, report)
            assert report["status"] == status and report["detail"], (what, report)
            assert report.get("reason") == reason, (what, report)
            assert "leaked" not in str(report) and "root:" not in str(report)
            await _alive(http, base_url)
        assert hits == []
    finally:
        await runner.cleanup()
