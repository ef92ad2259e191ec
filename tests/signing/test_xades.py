"""XAdES (enveloped XMLDSig, baseline B-B and B-T) over the owner key in the
HSM: real HTTP, real SoftHSM2, the service's own TSA, both databases.
Every signature is checked by Debian's `xmlsec1 --verify` trusting only this
CA's root, and by signxml's `XAdESVerifier`; hostile XML is refused."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from asn1crypto import cms, pem, tsp
from asn1crypto import x509 as asn1_x509
from lxml import etree
from signxml.exceptions import InvalidSignature
from signxml.xades import XAdESSignatureConfiguration, XAdESVerifier

from cloudsign.appkeys import STATUS
from cloudsign.ca.x509 import to_pem
from device_client.client import ApiError, CloudsignClient
from tests.helpers import authorize_documents, enrolled, passed_face_check
from tests.xml_attacks import BILLION_LAUGHS, fetch_counter

NS = {
    "ds": "http://www.w3.org/2000/09/xmldsig#",
    "xades": "http://uri.etsi.org/01903/v1.3.2#",
}
SIGNED_PROPERTIES = "http://uri.etsi.org/01903/v1.3.2#:SignedProperties"
KEY_INFO = "http://www.w3.org/2000/09/xmldsig#:KeyInfo"
PASSWORD = "correct horse battery"
#: How long a subprocess (xmlsec1, openssl) may take.
TOOL_TIMEOUT_SECONDS = 60.0


def _order(number: int, amount: str = "125000.00") -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<payment xmlns="urn:example:kz:payments" number="{number}">\n'
        "  <!-- a comment stays where it was -->\n"
        '  <payer iin="900101300123">Asel Nurlanovna</payer>\n'
        f'  <amount currency="KZT">{amount}</amount>\n'
        "  <purpose>Оплата по договору № 7</purpose>\n"
        "</payment>\n"
    ).encode()


@dataclass(frozen=True)
class Trust:
    root: Path
    issuing: Path
    root_cert: asn1_x509.Certificate


def _trust(cred: dict[str, Any], tmp_path: Path) -> Trust:
    root, issuing = tmp_path / "root.pem", tmp_path / "issuing.pem"
    root.write_text(cred["chain"][-1])
    issuing.write_text(cred["chain"][0])
    return Trust(root, issuing, asn1_x509.Certificate.load(pem.unarmor(root.read_bytes())[2]))


async def _run(*argv: str) -> tuple[int, str]:
    """A command, awaited (never blocking the loop the server runs on)."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), TOOL_TIMEOUT_SECONDS)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


async def xmlsec_verify(signed: bytes, trust: Trust, tmp_path: Path) -> tuple[int, str]:
    """`xmlsec1 --verify` trusting only the root (the issuing CA untrusted)."""
    path = tmp_path / f"signed-{os.urandom(4).hex()}.xml"
    path.write_bytes(signed)
    return await _run(
        "xmlsec1",
        "--verify",
        "--enabled-reference-uris",
        "empty,same-doc",
        "--id-attr:Id",
        SIGNED_PROPERTIES,
        "--id-attr:Id",
        KEY_INFO,
        "--trusted-pem",
        str(trust.root),
        "--untrusted-pem",
        str(trust.issuing),
        str(path),
    )


def signxml_verify(signed: bytes, trust: Trust) -> Any:
    """signxml's own XAdES verification against the root; the results."""
    return XAdESVerifier().verify(
        signed,
        ca_pem_file=str(trust.root),
        expect_config=XAdESSignatureConfiguration(expect_references=3),
    )


async def _sign_xml(
    client: CloudsignClient,
    cred: dict[str, Any],
    sad: str,
    document: bytes,
    *,
    level: str = "B",
    name: str | None = "payment.xml",
) -> tuple[int, Any, bytes]:
    """(status, headers, body) of the citizen API's sign-document in XAdES."""
    async with client.session.post(
        f"{client.base_url}/api/v1/me/credentials/{cred['credential_id']}/sign-document",
        json={
            "SAD": sad,
            "format": "xades",
            "level": level,
            "name": name,
            "document": base64.b64encode(document).decode(),
        },
        headers={"Authorization": f"Bearer {client.access_token}"},
    ) as resp:
        return resp.status, resp.headers, await resp.read()


def _signature(signed: bytes) -> Any:
    root = etree.fromstring(signed, parser=etree.XMLParser(resolve_entities=False))
    (signature,) = root.findall("ds:Signature", NS)
    return signature


async def check_time_stamp(signed: bytes, app: Any, trust: Trust, tmp_path: Path) -> None:
    """The B-T time-stamp: over the exclusive-c14n `ds:SignatureValue`, by
    the service's TSA (openssl verifies the token up to the root)."""
    signature = _signature(signed)
    (stamp,) = signature.findall(
        "ds:Object/xades:QualifyingProperties/xades:UnsignedProperties/"
        "xades:UnsignedSignatureProperties/xades:SignatureTimeStamp",
        NS,
    )
    c14n = stamp.find("ds:CanonicalizationMethod", NS).get("Algorithm")
    assert c14n == "http://www.w3.org/2001/10/xml-exc-c14n#"
    value = signature.find("ds:SignatureValue", NS)
    covered = etree.tostring(value, method="c14n", exclusive=True, with_comments=False)
    digest = hashlib.sha256(covered).digest()
    token_der = base64.b64decode(stamp.find("xades:EncapsulatedTimeStamp", NS).text)
    token = cms.ContentInfo.load(token_der)
    signed_data = token["content"]
    info: tsp.TSTInfo = signed_data["encap_content_info"]["content"].parsed
    assert info["message_imprint"]["hash_algorithm"]["algorithm"].native == "sha256"
    assert info["message_imprint"]["hashed_message"].native == digest
    tsa_cert = app[STATUS].tsa_identity.certificate
    (signer_info,) = signed_data["signer_infos"]
    sid = signer_info["sid"].chosen
    assert sid["serial_number"].native == tsa_cert.serial_number
    assert sid["issuer"] == tsa_cert.issuer
    (tmp_path / "token.der").write_bytes(token_der)
    (tmp_path / "tsa-chain.pem").write_text(to_pem(tsa_cert) + trust.issuing.read_text())
    code, out = await _run(
        "openssl",
        "ts",
        "-verify",
        "-token_in",
        "-in",
        str(tmp_path / "token.der"),
        "-digest",
        digest.hex(),
        "-CAfile",
        str(trust.root),
        "-untrusted",
        str(tmp_path / "tsa-chain.pem"),
    )
    assert code == 0 and "Verification: OK" in out, out
    # A token over anything else does not pass.
    code, out = await _run(
        "openssl",
        "ts",
        "-verify",
        "-token_in",
        "-in",
        str(tmp_path / "token.der"),
        "-digest",
        hashlib.sha256(covered + b" ").hexdigest(),
        "-CAfile",
        str(trust.root),
        "-untrusted",
        str(tmp_path / "tsa-chain.pem"),
    )
    assert code != 0, out


async def check_verifies(signed: bytes, document: bytes, trust: Trust, tmp_path: Path) -> None:
    """Both verifiers accept it, it covers the whole document, and a changed
    document fails both."""
    code, out = await xmlsec_verify(signed, trust, tmp_path)
    assert code == 0 and "OK" in out, out
    results = await asyncio.to_thread(signxml_verify, signed, trust)
    whole = results[0].signed_xml
    assert etree.QName(whole).localname == "payment"
    # What was signed is the document itself: same canonical form, signature removed.
    original = etree.fromstring(document)
    assert etree.tostring(whole, method="c14n", with_comments=False) == etree.tostring(
        original, method="c14n", with_comments=False
    )
    # Tampered: the amount changes.
    tampered = signed.replace(b"125000.00", b"925000.00")
    assert tampered != signed
    code, out = await xmlsec_verify(tampered, trust, tmp_path)
    assert code != 0, out
    with pytest.raises(InvalidSignature):
        await asyncio.to_thread(signxml_verify, tampered, trust)


async def test_xades_b_and_t_through_the_citizen_api(
    client: CloudsignClient, app: Any, tmp_path: Path
) -> None:
    totp, cred = await enrolled(client)
    trust = _trust(cred, tmp_path)
    doc_b, doc_t = _order(1), _order(2)
    sad = await authorize_documents(client, totp, cred, [doc_b, doc_t])

    status, headers, signed_b = await _sign_xml(client, cred, sad, doc_b, level="B")
    assert status == 200, signed_b
    assert headers["Content-Type"].startswith("application/xml")
    assert 'filename="payment-signed.xml"' in headers["Content-Disposition"]
    await check_verifies(signed_b, doc_b, trust, tmp_path)
    signature = _signature(signed_b)
    assert signature.find("ds:SignedInfo/ds:SignatureMethod", NS).get("Algorithm") == (
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"
    )
    assert signature.find(".//xades:SigningTime", NS) is not None
    assert signature.find(".//xades:SigningCertificateV2", NS) is not None
    assert signature.find(".//xades:UnsignedProperties", NS) is None  # B-B: no time-stamp
    # The signer's certificate is the credential's.
    certs = signature.findall("ds:KeyInfo/ds:X509Data/ds:X509Certificate", NS)
    leaf = pem.unarmor(cred["certificate"].encode())[2]
    assert base64.b64decode(certs[0].text) == leaf

    status, _headers, signed_t = await _sign_xml(client, cred, sad, doc_t, level="T")
    assert status == 200, signed_t
    await check_verifies(signed_t, doc_t, trust, tmp_path)
    await check_time_stamp(signed_t, app, trust, tmp_path)

    # The cabinet has both, as XAdES, and gives the same bytes back.
    listed = {d["document_hash"]: d for d in await client.documents()}
    for doc, signed in ((doc_b, signed_b), (doc_t, signed_t)):
        entry = listed[hashlib.sha256(doc).hexdigest()]
        assert entry["format"] == "xades"
        async with client.session.get(
            f"{client.base_url}/api/v1/me/documents/{entry['signature_id']}",
            headers={"Authorization": f"Bearer {client.access_token}"},
        ) as resp:
            assert resp.status == 200
            assert resp.content_type == "application/xml"
            assert await resp.read() == signed


async def test_xades_rsa_key(client: CloudsignClient, tmp_path: Path) -> None:
    totp, cred = await enrolled(client, algorithm="rsa-2048")
    trust = _trust(cred, tmp_path)
    doc = _order(3)
    sad = await authorize_documents(client, totp, cred, [doc])
    status, _headers, signed = await _sign_xml(client, cred, sad, doc)
    assert status == 200, signed
    assert _signature(signed).find("ds:SignedInfo/ds:SignatureMethod", NS).get("Algorithm") == (
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
    )
    await check_verifies(signed, doc, trust, tmp_path)


async def test_xades_through_csc_v2_sign_doc(
    client: CloudsignClient, app: Any, tmp_path: Path
) -> None:
    totp, cred = await enrolled(client)
    trust = _trust(cred, tmp_path)
    doc = _order(4)
    face = await passed_face_check(client)
    wrapped = await client.wrap_password(PASSWORD, "authorize")
    auth = await client.request(
        "POST",
        "/csc/v2/credentials/authorize",
        {
            "credentialID": cred["credential_id"],
            "numSignatures": 1,
            "hashes": [base64.b64encode(hashlib.sha256(doc).digest()).decode()],
            "hashAlgorithmOID": "2.16.840.1.101.3.4.2.1",
            "authData": [
                {"id": "PIN", "value": wrapped.to_pin()},
                {"id": "OTP", "value": await totp.fresh_code()},
                {"id": "FACE", "value": face},
            ],
        },
    )
    signed_doc = {
        "credentialID": cred["credential_id"],
        "SAD": auth["SAD"],
        "documents": [
            {
                "document": base64.b64encode(doc).decode(),
                "signature_format": "X",
                "conformance_level": "AdES-B-T",
            }
        ],
    }
    body = await client.request("POST", "/csc/v2/signatures/signDoc", signed_doc)
    signed = base64.b64decode(body["DocumentWithSignature"][0])
    await check_verifies(signed, doc, trust, tmp_path)
    await check_time_stamp(signed, app, trust, tmp_path)
    # The SAD covered one signature of that document: it is spent.
    with pytest.raises(ApiError) as err:
        await client.request("POST", "/csc/v2/signatures/signDoc", signed_doc)
    assert err.value.status == 400


async def test_xades_refusals(client: CloudsignClient, tmp_path: Path) -> None:
    """A SAD for another document signs nothing; LT is not offered for XML."""
    totp, cred = await enrolled(client)
    authorised, other = _order(5), _order(6)
    sad = await authorize_documents(client, totp, cred, [authorised])
    before = len(await client.documents())
    status, _h, body = await _sign_xml(client, cred, sad, other)
    assert status == 400, body
    assert b"invalid_sad" in body
    status, _h, body = await _sign_xml(client, cred, sad, authorised, level="LT")
    assert status == 400, body
    assert b'"field": "level"' in body or b'"field":"level"' in body
    assert len(await client.documents()) == before
    # Neither refusal used the authorisation up.
    status, _h, signed = await _sign_xml(client, cred, sad, authorised)
    assert status == 200, signed
    code, out = await xmlsec_verify(signed, _trust(cred, tmp_path), tmp_path)
    assert code == 0, out


async def test_hostile_xml_is_refused(
    client: CloudsignClient, http: aiohttp.ClientSession, base_url: str
) -> None:
    assert b"&lol8;&lol8;" in BILLION_LAUGHS
    runner, url, hits = await fetch_counter()
    try:
        documents = {
            "billion laughs": BILLION_LAUGHS,
            "external entity (file)": (
                b'<?xml version="1.0"?>\n<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n'
                b"<r>&x;</r>\n"
            ),
            "external entity (network)": (
                b'<?xml version="1.0"?>\n'
                + f'<!DOCTYPE r [<!ENTITY x SYSTEM "{url}/entity">]>\n'.encode()
                + b"<r>&x;</r>\n"
            ),
            "external DTD": f'<!DOCTYPE r SYSTEM "{url}/r.dtd">\n<r>&leak;</r>\n'.encode(),
            "UTF-16 DTD": '<?xml version="1.0" encoding="UTF-16"?>\n'
            '<!DOCTYPE r [<!ENTITY a "aaaaaaaaaa">]><r>&a;</r>'.encode("utf-16"),
            "not XML": b"%PDF-1.4\nthis is not XML at all\n",
            "truncated": _order(7)[:60],
            "undeclared entity": b"<r>&nbsp;</r>",
        }
        totp, cred = await enrolled(client)
        sad = await authorize_documents(client, totp, cred, list(documents.values()))
        for what, document in documents.items():
            status, _h, body = await _sign_xml(client, cred, sad, document)
            assert status == 400, (what, body)
            assert b'"field": "document"' in body or b'"field":"document"' in body, (what, body)
            assert b"leaked" not in body and b"root:" not in body
            # The server keeps serving.
            async with http.get(f"{base_url}/healthz") as r:
                assert r.status == 200, what
        assert hits == []  # nothing was fetched
    finally:
        await runner.cleanup()
    assert await client.documents() == []


async def test_the_hsm_key_has_nothing_private(client: CloudsignClient) -> None:
    """signxml's key object holds no private key: asking for one fails, and
    using it on the loop that must run the HSM call refuses instead of
    blocking that loop."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from cloudsign.signing.xades import _HsmBridge, hsm_key

    _totp, cred = await enrolled(client)
    certificate = asn1_x509.Certificate.load(pem.unarmor(cred["certificate"].encode())[2])

    async def never(*_args: Any) -> bytes:
        raise AssertionError("the HSM must not be reached")

    key = hsm_key(_HsmBridge(never, asyncio.get_running_loop()), certificate, "cred-1")
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert repr(key) == "HsmEcKey(credential='cred-1')"
    with pytest.raises(TypeError):
        key.private_numbers()
    with pytest.raises(TypeError):
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    with pytest.raises(RuntimeError, match="off the document worker's loop"):
        key.sign(b"<SignedInfo/>", ec.ECDSA(hashes.SHA256()))


async def test_failures_in_the_worker_surface_as_service_errors(
    client: CloudsignClient, app: Any, tmp_path: Path
) -> None:
    """Errors raised on the far side of signxml's thread (the HSM refusing
    a SAD) or after it (the TSA away) come out as the service's own errors,
    not as hangs or bare exceptions; the same call with the real SAD and
    TSA signs, so those were the failures."""
    from cloudsign.appkeys import CA, SIGNING
    from cloudsign.errors import ServiceUnavailableError
    from cloudsign.signing import SadError
    from cloudsign.signing.cms import LevelServices
    from cloudsign.signing.xades import xades_enveloped
    from hsm_bridge import HashAlgorithm, SignatureScheme
    from tests.helpers import free_port

    totp, cred = await enrolled(client)
    doc = _order(8)
    sad = await authorize_documents(client, totp, cred, [doc])
    signing, ca = app[SIGNING], app[CA]
    auth = await signing.sads.find(
        sad, owner_id=client.owner_id, credential_id=cred["credential_id"]
    )
    certificate = asn1_x509.Certificate.load(pem.unarmor(cred["certificate"].encode())[2])

    async def attempt(token: str, level: str, tsa_url: str) -> bytes:
        async def sign(digest: bytes, h: HashAlgorithm, scheme: SignatureScheme) -> bytes:
            (signature,) = await signing.sads.sign(auth, token, [digest], h, scheme)
            return bytes(signature)

        services = LevelServices(tsa_url, (ca.root,), (ca.issuing,))
        made: bytes = await signing.documents.run(
            lambda session: xades_enveloped(
                sign,
                auth.credential_id,
                certificate,
                ca.chain,
                doc,
                signing_time=signing.clock(),
                session=session,
                level=level,
                services=services,
            )
        )
        return made

    tsa = f"{client.base_url}/tsa"
    with pytest.raises(SadError):
        await asyncio.wait_for(attempt("not-the-sad", "B", tsa), 30)
    with pytest.raises(ServiceUnavailableError):
        await asyncio.wait_for(attempt(sad, "T", f"http://127.0.0.1:{free_port()}/tsa"), 60)
    signed = await asyncio.wait_for(attempt(sad, "T", tsa), 60)
    await check_verifies(signed, doc, _trust(cred, tmp_path), tmp_path)
    await check_time_stamp(signed, app, _trust(cred, tmp_path), tmp_path)
