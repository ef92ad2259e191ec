"""XAdES: enveloped XMLDSig signatures of XML documents, baseline B-B and
B-T (ETSI EN 319 132-1), through signxml, over the owner key in the HSM.

signxml wants a `cryptography` private key and signs synchronously. It gets
`HsmEcKey` or `HsmRsaKey`: their `sign` hashes what signxml hands it (the
canonicalised `ds:SignedInfo`) and passes the digest to the same SAD-bound
HSM coroutine as CAdES/PAdES (`DigestSigner`); there is no private key in
this process, and asking one for its private numbers or bytes fails.

Where it runs: `xades_enveloped` is a coroutine for the `DocumentWorker`'s
loop. It parses and signs in a thread of that loop's executor, and each
digest the key signs goes back to the worker's loop with
`run_coroutine_threadsafe` (the loop is free: it only awaits the thread),
the thread waiting at most `HSM_WAIT_SECONDS`. Level T then asks this
service's TSA (pyHanko's `HTTPTimeStamper`, on the worker's HTTP session)
for a token over the canonicalised `ds:SignatureValue` and adds it as
`xades:UnsignedSignatureProperties/xades:SignatureTimeStamp`, which signxml
does not write.

Documents are untrusted: parsed by lxml without entity resolution, DTD
loading, network access or huge-tree mode, and refused with a DTD or an
entity at all (billion laughs, XXE).
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import hashlib
import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final, NoReturn

import aiohttp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.utils import Buffer
from lxml import etree
from pyhanko.sign.timestamps.aiohttp_client import HTTPTimeStamper
from signxml.algorithms import DigestAlgorithm, SignatureMethod
from signxml.exceptions import SignXMLException
from signxml.xades.xades import XAdESDataObjectFormat, XAdESSigner

from cloudsign.errors import CloudsignError, ServiceUnavailableError, ValidationError
from cloudsign.signing.cms import DigestSigner, LevelServices
from cloudsign.web.xml import UntrustedXmlError, parse_untrusted
from hsm_bridge import (
    HashAlgorithm,
    HsmError,
    SignatureScheme,
    UnsupportedAlgorithmError,
    hash_algorithm,
)

#: Baseline levels offered for XML: B (signature only), T (+ signature time-stamp).
XADES_LEVELS: Final = ("B", "T")
#: How long signxml's thread waits for the HSM to sign one digest.
HSM_WAIT_SECONDS: Final = 60.0
DS: Final = "http://www.w3.org/2000/09/xmldsig#"
XADES: Final = "http://uri.etsi.org/01903/v1.3.2#"
#: The canonicalisation of `ds:SignatureValue` before the TSA hashes it.
EXC_C14N: Final = "http://www.w3.org/2001/10/xml-exc-c14n#"
_NS: Final = {"ds": DS, "xades": XADES}


def parse_document(document: bytes) -> Any:
    """The document's root element, or a 400 naming `document`
    (`cloudsign.web.xml`: not well-formed, a DTD, an entity)."""
    try:
        return parse_untrusted(document)
    except UntrustedXmlError as e:
        raise ValidationError(e.message, field="document") from e


# -- the owner key, as signxml sees it ----------------------------------------------


class _HsmBridge:
    """Hands a digest from signxml's thread to the HSM coroutine on the
    worker's loop, and waits for the signature."""

    def __init__(self, sign: DigestSigner, loop: asyncio.AbstractEventLoop) -> None:
        self._sign = sign
        self._loop = loop
        self.abandoned = threading.Event()

    def __repr__(self) -> str:
        return "_HsmBridge()"

    def __call__(self, data: bytes, algorithm: object, scheme: SignatureScheme) -> bytes:
        h = _hash_of(algorithm)
        digest = hashlib.new(h.name, data).digest()
        if self.abandoned.is_set():
            raise ServiceUnavailableError("the signature was abandoned")
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            # Waiting here would block the very loop that must run the HSM call.
            raise RuntimeError("the HSM key must be used off the document worker's loop")
        future = asyncio.run_coroutine_threadsafe(_call(self._sign, digest, h, scheme), self._loop)
        try:
            return future.result(timeout=HSM_WAIT_SECONDS)
        except concurrent.futures.TimeoutError as e:
            future.cancel()
            raise ServiceUnavailableError("the HSM did not answer in time") from e
        except concurrent.futures.CancelledError as e:
            raise ServiceUnavailableError("the signature was abandoned") from e


async def _call(
    sign: DigestSigner, digest: bytes, h: HashAlgorithm, scheme: SignatureScheme
) -> bytes:
    return await sign(digest, h, scheme)


def _hash_of(algorithm: object) -> HashAlgorithm:
    if isinstance(algorithm, Prehashed) or not isinstance(algorithm, hashes.HashAlgorithm):
        raise UnsupportedAlgorithm("the HSM key signs messages with SHA-2 only")
    try:
        return hash_algorithm(algorithm.name)
    except UnsupportedAlgorithmError as e:
        raise UnsupportedAlgorithm(e.message) from e


def _no_private_key() -> NoReturn:
    raise TypeError("the owner key stays in the HSM: it has no private numbers or bytes here")


class HsmEcKey(ec.EllipticCurvePrivateKey):
    """An EC owner key in the HSM: ECDSA through the SAD, nothing else."""

    def __init__(
        self, public: ec.EllipticCurvePublicKey, bridge: _HsmBridge, credential_id: str
    ) -> None:
        self._public = public
        self._bridge = bridge
        self._credential_id = credential_id

    def __repr__(self) -> str:
        return f"HsmEcKey(credential={self._credential_id!r})"

    def sign(self, data: Buffer, signature_algorithm: ec.EllipticCurveSignatureAlgorithm) -> bytes:
        if not isinstance(signature_algorithm, ec.ECDSA):
            raise UnsupportedAlgorithm("the HSM key makes ECDSA signatures only")
        # DER SEQUENCE{r, s}, as cryptography's keys return it.
        return self._bridge(bytes(data), signature_algorithm.algorithm, SignatureScheme.ECDSA)

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._public.curve

    @property
    def key_size(self) -> int:
        return self._public.key_size

    def exchange(self, algorithm: ec.ECDH, peer_public_key: ec.EllipticCurvePublicKey) -> bytes:
        raise UnsupportedAlgorithm("the owner key only signs")

    def private_numbers(self) -> ec.EllipticCurvePrivateNumbers:
        _no_private_key()

    def private_bytes(
        self,
        encoding: serialization.Encoding,
        format: serialization.PrivateFormat,
        encryption_algorithm: serialization.KeySerializationEncryption,
    ) -> bytes:
        _no_private_key()

    def __copy__(self) -> HsmEcKey:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> HsmEcKey:
        return self


class HsmRsaKey(rsa.RSAPrivateKey):
    """An RSA owner key in the HSM: PKCS#1 v1.5 or PSS (salt = digest
    size) through the SAD, nothing else."""

    def __init__(self, public: rsa.RSAPublicKey, bridge: _HsmBridge, credential_id: str) -> None:
        self._public = public
        self._bridge = bridge
        self._credential_id = credential_id

    def __repr__(self) -> str:
        return f"HsmRsaKey(credential={self._credential_id!r})"

    def sign(
        self,
        data: bytes,
        padding: asym_padding.AsymmetricPadding,
        algorithm: object,
    ) -> bytes:
        if isinstance(padding, asym_padding.PKCS1v15):
            scheme = SignatureScheme.RSA_PKCS1V15
        elif isinstance(padding, asym_padding.PSS) and _pss_fits(padding, algorithm):
            scheme = SignatureScheme.RSA_PSS
        else:
            raise UnsupportedAlgorithm(
                "the HSM key signs PKCS#1 v1.5, or PSS with MGF1 of the same hash "
                "and a salt as long as the digest"
            )
        return self._bridge(data, algorithm, scheme)

    def public_key(self) -> rsa.RSAPublicKey:
        return self._public

    @property
    def key_size(self) -> int:
        return self._public.key_size

    def decrypt(self, ciphertext: bytes, padding: asym_padding.AsymmetricPadding) -> bytes:
        raise UnsupportedAlgorithm("the owner key only signs")

    def private_numbers(self) -> rsa.RSAPrivateNumbers:
        _no_private_key()

    def private_bytes(
        self,
        encoding: serialization.Encoding,
        format: serialization.PrivateFormat,
        encryption_algorithm: serialization.KeySerializationEncryption,
    ) -> bytes:
        _no_private_key()

    def __copy__(self) -> HsmRsaKey:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> HsmRsaKey:
        return self


def _pss_fits(pss: asym_padding.PSS, algorithm: object) -> bool:
    mgf = pss.mgf
    salt = pss._salt_length  # cryptography keeps it private; no public accessor
    return (
        isinstance(algorithm, hashes.HashAlgorithm)
        and isinstance(mgf, asym_padding.MGF1)
        and mgf._algorithm.name == algorithm.name
        and (salt == algorithm.digest_size or salt is asym_padding.PSS.DIGEST_LENGTH)
    )


# -- signing --------------------------------------------------------------------------


class _Signer(XAdESSigner):
    """signxml's XAdES signer with the service's signing time, and a hold
    on the `ds:Signature` it builds (for the time-stamp)."""

    def __init__(self, signing_time: datetime, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.signing_time = signing_time
        self.signature: Any = None
        self.signature_annotators.insert(0, self._remember)

    def _remember(self, sig_root: Any, signing_settings: Any) -> None:
        self.signature = sig_root

    def add_signing_time(
        self, signed_signature_properties: Any, sig_root: Any, signing_settings: Any
    ) -> None:
        etree.SubElement(
            signed_signature_properties, f"{{{XADES}}}SigningTime"
        ).text = self.signing_time.isoformat(timespec="seconds")


def _sign_tree(
    document: bytes,
    key: HsmEcKey | HsmRsaKey,
    certificates: Sequence[x509.Certificate],
    signing_time: datetime,
) -> tuple[Any, Any]:
    """Parse and sign (synchronous, in a thread): (the signed root, its
    `ds:Signature`)."""
    root = parse_document(document)
    ecdsa = isinstance(key, HsmEcKey)
    method = SignatureMethod.ECDSA_SHA256 if ecdsa else SignatureMethod.RSA_SHA256
    signer = _Signer(
        signing_time,
        signature_algorithm=method,
        digest_algorithm=DigestAlgorithm.SHA256,
        data_object_format=XAdESDataObjectFormat(
            Description="the signed XML document", MimeType="text/xml"
        ),
    )
    try:
        signed = signer.sign(root, key=key, cert=list(certificates), always_add_key_value=False)
    except (CloudsignError, HsmError):
        raise
    except (SignXMLException, etree.LxmlError, ValueError) as e:
        raise ValidationError(f"the XML document cannot be signed: {e}", field="document") from e
    if signer.signature is None:
        raise RuntimeError("signxml built no ds:Signature")
    return signed, signer.signature


def signature_value_c14n(signature: Any) -> bytes:
    """What the signature time-stamp covers: `ds:SignatureValue`,
    exclusive-canonicalised (ETSI EN 319 132-1, 5.4.1)."""
    value = signature.find("ds:SignatureValue", namespaces=_NS)
    if value is None:
        raise ValidationError("the signature has no ds:SignatureValue", field="document")
    return bytes(etree.tostring(value, method="c14n", exclusive=True, with_comments=False))


def _add_signature_time_stamp(signature: Any, token_der: bytes) -> None:
    qualifying = signature.find("ds:Object/xades:QualifyingProperties", namespaces=_NS)
    if qualifying is None:
        raise RuntimeError("signxml wrote no xades:QualifyingProperties")
    unsigned = qualifying.find("xades:UnsignedProperties", namespaces=_NS)
    if unsigned is None:
        unsigned = etree.SubElement(qualifying, f"{{{XADES}}}UnsignedProperties")
    props = unsigned.find("xades:UnsignedSignatureProperties", namespaces=_NS)
    if props is None:
        props = etree.SubElement(unsigned, f"{{{XADES}}}UnsignedSignatureProperties")
    sig_id = signature.get("Id") or "Signature"
    stamp = etree.SubElement(
        props, f"{{{XADES}}}SignatureTimeStamp", Id=f"{sig_id}-SignatureTimeStamp"
    )
    etree.SubElement(stamp, f"{{{DS}}}CanonicalizationMethod", Algorithm=EXC_C14N)
    encapsulated = etree.SubElement(stamp, f"{{{XADES}}}EncapsulatedTimeStamp")
    encapsulated.text = base64.b64encode(token_der).decode()


def hsm_key(
    bridge: _HsmBridge, certificate: asn1_x509.Certificate, credential_id: str
) -> HsmEcKey | HsmRsaKey:
    """The owner key behind `certificate` as a `cryptography` private key."""
    public = serialization.load_der_public_key(certificate.public_key.dump())
    if isinstance(public, ec.EllipticCurvePublicKey):
        return HsmEcKey(public, bridge, credential_id)
    if isinstance(public, rsa.RSAPublicKey):
        return HsmRsaKey(public, bridge, credential_id)
    raise ValidationError("XAdES is offered for EC and RSA keys", field="format")


async def xades_enveloped(
    sign: DigestSigner,
    credential_id: str,
    certificate: asn1_x509.Certificate,
    chain: Sequence[asn1_x509.Certificate],
    document: bytes,
    *,
    signing_time: datetime,
    session: aiohttp.ClientSession,
    level: str = "B",
    services: LevelServices | None = None,
) -> bytes:
    """The XML document with an enveloped XAdES B-B or B-T signature (UTF-8).
    Run it on the `DocumentWorker`."""
    if level not in XADES_LEVELS:
        raise ValidationError("XAdES is offered at levels B and T", field="level")
    bridge = _HsmBridge(sign, asyncio.get_running_loop())
    key = hsm_key(bridge, certificate, credential_id)
    certs = [x509.load_der_x509_certificate(c.dump()) for c in (certificate, *chain)]
    # The signer's certificate and the issuing CA (not the root: a relying
    # party brings its own trust anchor).
    certs = [c for c in certs if not _self_signed(c)]
    try:
        signed, signature = await asyncio.to_thread(_sign_tree, document, key, certs, signing_time)
    except BaseException:
        bridge.abandoned.set()
        raise
    if level == "T":
        assert services is not None
        c14n = signature_value_c14n(signature)
        digest = hashlib.sha256(c14n).digest()
        stamper = HTTPTimeStamper(services.tsa_url, session=session)
        try:
            token = await stamper.async_timestamp(digest, "sha256")
        except (TimeoutError, OSError, aiohttp.ClientError) as e:
            raise ServiceUnavailableError(f"the time-stamp could not be obtained: {e}") from e
        _add_signature_time_stamp(signature, bytes(token.dump()))
    return bytes(etree.tostring(signed, xml_declaration=True, encoding="UTF-8"))


def _self_signed(cert: x509.Certificate) -> bool:
    return cert.issuer == cert.subject
