"""XML signatures in a validation worker: the untrusted document parsed as
cloudsign/signing/xades.py parses what it signs (no entities, no DTD, no
network, lxml's bounded tree), its one `ds:Signature` read, and the
signature's maths checked by signxml (`XMLVerifier`, and `XAdESVerifier` for
the signed properties of a XAdES signature) with the signer's certificate
given, so that signxml checks no chain and no validity period: trust,
validity and revocation are pyhanko-certvalidator's, in worker.py.

Nothing here fetches anything: signxml is given no URI resolver, so a
reference to anything outside the document does not verify.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from asn1crypto import cms, x509
from cryptography import x509 as pyca_x509
from lxml import etree
from signxml.algorithms import SignatureMethod
from signxml.exceptions import InvalidDigest, InvalidInput, InvalidSignature, SignXMLException
from signxml.verifier import SignatureConfiguration, XMLVerifier
from signxml.xades.xades import XAdESSignatureConfiguration, XAdESVerifier

from cloudsign.web.xml import UntrustedXmlError, parse_untrusted, untrusted_parser

DS: Final = "http://www.w3.org/2000/09/xmldsig#"
XADES: Final = "http://uri.etsi.org/01903/v1.3.2#"
ENVELOPED: Final = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
SIGNED_PROPERTIES_TYPE: Final = "http://uri.etsi.org/01903#SignedProperties"
_NS: Final = {"ds": DS, "xades": XADES}
#: The canonicalisations a signature time-stamp may name (ETSI EN 319 132-1:
#: the default, when none is named, is Canonical XML 1.0).
_C14N: Final[dict[str, tuple[bool, bool]]] = {  # algorithm -> (exclusive, with comments)
    "http://www.w3.org/TR/2001/REC-xml-c14n-20010315": (False, False),
    "http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments": (False, True),
    "http://www.w3.org/2001/10/xml-exc-c14n#": (True, False),
    "http://www.w3.org/2001/10/xml-exc-c14n#WithComments": (True, True),
}
_DEFAULT_C14N: Final = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
#: Bounds on what one signature may carry (more is refused as unsupported).
MAX_REFERENCES: Final = 16
MAX_CERTIFICATES: Final = 8
MAX_TIMESTAMPS: Final = 4
_BOMS: Final = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")


class XmlRefused(Exception):
    """The document cannot be validated; `code` as worker.Refused's."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def looks_like_xml(data: bytes) -> bool:
    """An XML document, by its first bytes (a BOM, then `<`, in UTF-8 or UTF-16)."""
    head = data[:4096]
    for bom in _BOMS:
        if head.startswith(bom):
            return True
    stripped = head.lstrip(b" \t\r\n")
    return stripped[:1] == b"<" or stripped[:2] in (b"<\x00", b"\x00<")


def parse(document: bytes) -> Any:
    """The root element, or `XmlRefused` (`cloudsign.web.xml`: a DTD or an
    entity at all, not well-formed, nested too deeply)."""
    try:
        return parse_untrusted(document)
    except UntrustedXmlError as e:
        raise XmlRefused(e.code, e.message) from e


@dataclass(frozen=True)
class TimeStamp:
    """A `xades:SignatureTimeStamp`: its token, and the bytes it must be over."""

    token: cms.SignedData
    covered: bytes | None  # None: a canonicalisation this service does not apply

    def imprint(self, hash_of: Callable[[str, bytes], bytes]) -> Callable[[str], bytes]:
        """pyHanko's `expected_tst_imprint`: the digest the token must carry."""

        def expected(algorithm: str) -> bytes:
            return b"" if self.covered is None else hash_of(algorithm, self.covered)

        return expected


@dataclass(frozen=True)
class XmlSignature:
    """What the document's `ds:Signature` says (nothing verified yet)."""

    xades: bool
    certificates: tuple[x509.Certificate, ...]
    signer: x509.Certificate
    claimed_signing_time: datetime | None
    timestamps: tuple[TimeStamp, ...]
    references: tuple[dict[str, Any], ...]
    signature_method: str
    digest_algorithm: str | None
    coverage: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"XmlSignature(xades={self.xades}, references={len(self.references)})"


def read_signature(document: bytes) -> XmlSignature:
    root = parse(document)
    signatures = root.findall(f".//{{{DS}}}Signature")
    if root.tag == f"{{{DS}}}Signature":
        raise XmlRefused("unsupported", "an enveloped XML signature is validated, not enveloping")
    if not signatures:
        raise XmlRefused("no_signature", "the XML document has no ds:Signature")
    if len(signatures) != 1:
        raise XmlRefused("unsupported", "an XML document with exactly one signature is validated")
    (signature,) = signatures
    method_node = signature.find("ds:SignedInfo/ds:SignatureMethod", _NS)
    method = "" if method_node is None else (method_node.get("Algorithm") or "")
    references = signature.findall("ds:SignedInfo/ds:Reference", _NS)
    if not references:
        raise XmlRefused("malformed", "the signature has no ds:Reference")
    if len(references) > MAX_REFERENCES:
        raise XmlRefused("unsupported", f"more than {MAX_REFERENCES} references in one signature")
    certificates = _certificates(signature)
    described = tuple(_reference(r) for r in references)
    qualifying = signature.find("ds:Object/xades:QualifyingProperties", _NS)
    xades = qualifying is not None and any(r["type"] == SIGNED_PROPERTIES_TYPE for r in described)
    signing_time = None
    stamps: tuple[TimeStamp, ...] = ()
    if qualifying is not None:
        node = qualifying.find(
            "xades:SignedProperties/xades:SignedSignatureProperties/xades:SigningTime", _NS
        )
        signing_time = _time(node)
        stamps = _timestamps(signature, qualifying)
    return XmlSignature(
        xades=xades,
        certificates=certificates,
        signer=_leaf(certificates),
        claimed_signing_time=signing_time,
        timestamps=stamps,
        references=described,
        signature_method=method,
        digest_algorithm=_digest_of(method),
        coverage=_coverage(described),
    )


def _certificates(signature: Any) -> tuple[x509.Certificate, ...]:
    nodes = signature.findall("ds:KeyInfo/ds:X509Data/ds:X509Certificate", _NS)
    if not nodes:
        raise XmlRefused(
            "unsupported", "the signature names no certificate (ds:X509Data/ds:X509Certificate)"
        )
    if len(nodes) > MAX_CERTIFICATES:
        raise XmlRefused("unsupported", f"more than {MAX_CERTIFICATES} certificates in ds:KeyInfo")
    certs = []
    for node in nodes:
        try:
            der = base64.b64decode("".join((node.text or "").split()), validate=True)
            cert = x509.Certificate.load(der, strict=True)
            cert.native  # noqa: B018 - parse it all now, not while reporting
        except (binascii.Error, ValueError, TypeError) as e:
            raise XmlRefused("malformed", "a ds:X509Certificate is not a certificate") from e
        certs.append(cert)
    return tuple(certs)


def _leaf(certs: tuple[x509.Certificate, ...]) -> x509.Certificate:
    """The signer's certificate: the one that issued none of the others."""
    issuers = {c.issuer.dump() for c in certs}
    for cert in certs:
        if cert.subject.dump() not in issuers or (cert.subject == cert.issuer and len(certs) == 1):
            return cert
    return certs[0]


def _reference(node: Any) -> dict[str, Any]:
    transforms = [t.get("Algorithm") for t in node.findall("ds:Transforms/ds:Transform", _NS)]
    digest = node.find("ds:DigestMethod", _NS)
    return {
        "uri": node.get("URI"),
        "type": node.get("Type"),
        "transforms": transforms,
        "digest_method": None if digest is None else digest.get("Algorithm"),
    }


def _coverage(references: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    """Which part of the document the signature covers: each reference, and
    whether one is the whole document (`URI=""` with the enveloped-signature
    transform and canonicalisation only: nothing filtered out)."""
    whole = any(
        r["uri"] in ("", "#xpointer(/)")
        and all(t == ENVELOPED or t in _C14N or _is_c14n11(t) for t in r["transforms"])
        for r in references
    )
    return {"references": list(references), "whole_document": whole}


def _is_c14n11(algorithm: str | None) -> bool:
    return algorithm in (
        "http://www.w3.org/2006/12/xml-c14n11",
        "http://www.w3.org/2006/12/xml-c14n11#WithComments",
    )


def _time(node: Any) -> datetime | None:
    if node is None or not node.text:
        return None
    try:
        return datetime.fromisoformat(node.text.strip())
    except ValueError:
        return None


def _timestamps(signature: Any, qualifying: Any) -> tuple[TimeStamp, ...]:
    nodes = qualifying.findall(
        "xades:UnsignedProperties/xades:UnsignedSignatureProperties/xades:SignatureTimeStamp",
        _NS,
    )
    if len(nodes) > MAX_TIMESTAMPS:
        raise XmlRefused("unsupported", f"more than {MAX_TIMESTAMPS} signature time-stamps")
    value = signature.find("ds:SignatureValue", _NS)
    stamps = []
    for node in nodes:
        method = node.find("ds:CanonicalizationMethod", _NS)
        algorithm = _DEFAULT_C14N if method is None else method.get("Algorithm")
        c14n = _C14N.get(algorithm or "")
        covered = None
        if c14n is not None and value is not None:
            exclusive, comments = c14n
            covered = bytes(
                etree.tostring(value, method="c14n", exclusive=exclusive, with_comments=comments)
            )
        for encapsulated in node.findall("xades:EncapsulatedTimeStamp", _NS):
            stamps.append(TimeStamp(_token(encapsulated.text or ""), covered))
    return tuple(stamps[:MAX_TIMESTAMPS])


def _token(text: str) -> cms.SignedData:
    try:
        der = base64.b64decode("".join(text.split()), validate=True)
        info = cms.ContentInfo.load(der, strict=True)
        if info["content_type"].native != "signed_data":
            raise ValueError("not SignedData")
        token: cms.SignedData = info["content"]
        token.native  # noqa: B018 - parse it all now
    except (binascii.Error, ValueError, TypeError) as e:
        raise XmlRefused("malformed", "a signature time-stamp is not an RFC 3161 token") from e
    return token


def _digest_of(method: str) -> str | None:
    try:
        name = SignatureMethod(method).name.lower()
    except (InvalidInput, ValueError):
        return None
    found = re.search(r"sha3_\d+|sha\d+", name)
    return None if found is None else found.group(0)


# -- the maths ----------------------------------------------------------------------


@dataclass(frozen=True)
class Maths:
    """signxml's verdict with `signer` as the signer's certificate:
    `intact` (every reference's digest), `valid` (the signature value over
    `ds:SignedInfo`), `signer_named` (for XAdES: the signed properties'
    `SigningCertificate(V2)` names that certificate)."""

    signer: x509.Certificate
    intact: bool
    valid: bool
    signer_named: bool = True


def verify_maths(document: bytes, info: XmlSignature) -> Maths:
    """Check the signature with each certificate of `ds:KeyInfo` (the leaf
    first) as the signer's; the first whose key verifies the signature value
    is the signer's. Structural errors are `XmlRefused`."""
    candidates = [info.signer, *(c for c in info.certificates if c is not info.signer)]
    for cert in candidates:
        result = _verify_with(document, info, cert)
        if result is not None:
            return result
    return Maths(signer=info.signer, intact=True, valid=False)


def _verify_with(document: bytes, info: XmlSignature, cert: x509.Certificate) -> Maths | None:
    """The verdict, or None when the signature value does not verify with
    this certificate's key."""
    signer = pyca_x509.load_der_x509_certificate(cert.dump())
    common: dict[str, Any] = {
        "x509_cert": signer,
        "parser": untrusted_parser(),
        # No URI resolver: only same-document references verify.
        "uri_resolver": None,
    }
    # The validity period is certvalidator's to judge: signxml's own check
    # is held at a time when the certificate is valid.
    config: dict[str, Any] = {
        "expect_references": True,
        "verification_time": signer.not_valid_before_utc,
    }
    try:
        XMLVerifier().verify(document, expect_config=SignatureConfiguration(**config), **common)
    except InvalidDigest:
        return Maths(signer=cert, intact=False, valid=True)
    except InvalidInput as e:
        raise XmlRefused("malformed", f"the signature cannot be validated: {e}") from e
    except InvalidSignature:
        return None
    except etree.DocumentInvalid as e:
        raise XmlRefused("malformed", "the ds:Signature does not follow the XMLDSig schema") from e
    except SignXMLException as e:
        raise XmlRefused("unsupported", f"the signature cannot be validated: {e}") from e
    if not info.xades:
        return Maths(signer=cert, intact=True, valid=True)
    try:
        XAdESVerifier().verify(
            document, expect_config=XAdESSignatureConfiguration(**config), **common
        )
    except InvalidSignature:
        # The maths hold, but the signed properties name another certificate.
        return Maths(signer=cert, intact=True, valid=True, signer_named=False)
    except (SignXMLException, etree.DocumentInvalid) as e:
        raise XmlRefused("malformed", f"the XAdES properties cannot be validated: {e}") from e
    return Maths(signer=cert, intact=True, valid=True)
