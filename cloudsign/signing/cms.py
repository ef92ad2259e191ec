"""CAdES and PAdES through pyHanko, over the owner key in the HSM.

pyHanko builds the whole CMS (signed attributes with signing-certificate-v2,
content type, message digest, signing time, CMS algorithm protection); our
`HsmOwnerSigner` implements only pyHanko's narrow seam, `async_sign_raw`, by
hashing the signed attributes and signing that digest in the HSM.

pyHanko parses and rewrites PDFs synchronously, so documents are signed on
the `DocumentWorker`'s thread, which runs its own event loop and owns the one
HTTP session pyHanko's time-stamper and OCSP/CRL fetchers use (an aiohttp
session belongs to one loop). The service's loop stays free; the HSM calls
the signer makes still go to the process's PKCS#11 thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, TypeVar

import aiohttp
from asn1crypto import cms, core, crl, ocsp, x509
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import fields, signers
from pyhanko.sign.ades.asn1_util import register_cms_attribute
from pyhanko.sign.general import SigningError, extract_certificate_info
from pyhanko.sign.timestamps.aiohttp_client import HTTPTimeStamper
from pyhanko.sign.validation.errors import SignatureValidationError
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import PathBuildingError, PathValidationError
from pyhanko_certvalidator.fetchers.aiohttp_fetchers import AIOHttpFetcherBackend
from pyhanko_certvalidator.registry import SimpleCertificateStore

from cloudsign.errors import ServiceUnavailableError, ValidationError
from hsm_bridge import HashAlgorithm, SignatureScheme, hash_algorithm

T = TypeVar("T")

#: A generous placeholder for size estimation (dry runs): RSA-3072 is 384 bytes.
ESTIMATED_SIGNATURE_BYTES: Final = 512
#: What pyHanko's reader raises on a hostile PDF besides its own PdfError: it
#: parses lazily, so these surface while reading and while signing alike.
_BROKEN_PDF: Final = (
    PdfError,
    ValueError,
    KeyError,
    TypeError,
    IndexError,
    AttributeError,
    RecursionError,
    OverflowError,
)


#: Signs one digest with the owner key in the HSM (under a SAD).
DigestSigner = Callable[[bytes, HashAlgorithm, SignatureScheme], Awaitable[bytes]]


class HsmOwnerSigner(signers.Signer):
    """pyHanko signer whose private key is the owner key in the HSM, reached
    through `sign` (the SAD's binding, signing.sad)."""

    def __init__(
        self,
        sign: DigestSigner,
        credential_id: str,
        certificate: x509.Certificate,
        chain: Sequence[x509.Certificate],
        *,
        prefer_pss: bool = False,
    ) -> None:
        self._sign = sign
        self._credential_id = credential_id
        super().__init__(
            signing_cert=certificate,
            cert_registry=SimpleCertificateStore.from_certs(list(chain)),  # type: ignore[no-untyped-call]
            prefer_pss=prefer_pss,
        )

    def __repr__(self) -> str:
        return f"HsmOwnerSigner(credential={self._credential_id!r})"

    async def async_sign_raw(
        self, data: bytes, digest_algorithm: str, dry_run: bool = False
    ) -> bytes:
        if dry_run:
            return bytes(ESTIMATED_SIGNATURE_BYTES)
        h = hash_algorithm(digest_algorithm)
        digest = hashlib.new(h.name, data).digest()
        mechanism = self.get_signature_mechanism_for_digest(digest_algorithm)
        name = mechanism["algorithm"].native
        if "ecdsa" in name:
            scheme = SignatureScheme.ECDSA
        elif name == "rsassa_pss":
            scheme = SignatureScheme.RSA_PSS
        else:
            scheme = SignatureScheme.RSA_PKCS1V15
        return await self._sign(digest, h, scheme)


@dataclass(frozen=True)
class LevelServices:
    """Where signatures above baseline-B get their time and validation data:
    this service's own TSA, and its OCSP/CRL endpoints (fetched over HTTP, as
    any relying party would)."""

    tsa_url: str
    trust_roots: tuple[x509.Certificate, ...]
    other_certs: tuple[x509.Certificate, ...]


#: Baseline levels: B (signature only), T (+ signature time-stamp),
#: LT (+ the certificates and OCSP/CRL data to validate it later),
#: LTA (+ a document time-stamp over all of it; PAdES only).
LEVELS: Final = ("B", "T", "LT", "LTA")
CADES_LEVELS: Final = ("B", "T", "LT")


# -- CAdES-LT validation data (ETSI EN 319 122-1 5.5.1, 5.5.2; RFC 5126 6.3) ------


class CertificateValues(core.SequenceOf):  # type: ignore[misc]
    """`CertificateValues ::= SEQUENCE OF Certificate`"""

    _child_spec = x509.Certificate


class _CrlValues(core.SequenceOf):  # type: ignore[misc]
    _child_spec = crl.CertificateList


class _OcspValues(core.SequenceOf):  # type: ignore[misc]
    _child_spec = ocsp.BasicOCSPResponse


class RevocationValues(core.Sequence):  # type: ignore[misc]
    """`RevocationValues ::= SEQUENCE { crlVals [0] SEQUENCE OF CertificateList
    OPTIONAL, ocspVals [1] SEQUENCE OF BasicOCSPResponse OPTIONAL, ... }`
    (the CAdES module has explicit tags)."""

    _fields = [  # noqa: RUF012 - asn1crypto's declarative spec
        ("crl_vals", _CrlValues, {"explicit": 0, "optional": True}),
        ("ocsp_vals", _OcspValues, {"explicit": 1, "optional": True}),
    ]


# asn1crypto knows neither attribute; pyHanko's helper registers them the way
# it registers its own CAdES attributes.
register_cms_attribute("1.2.840.113549.1.9.16.2.23", "certificate_values", CertificateValues)
register_cms_attribute("1.2.840.113549.1.9.16.2.24", "revocation_values", RevocationValues)


def _context(services: LevelServices, session: aiohttp.ClientSession) -> ValidationContext:
    """Hard-fail revocation against this CA's root, fetching this service's
    OCSP and CRLs: what a relying party would do, so what it fetches is what
    an LT signature must carry."""
    return ValidationContext(
        trust_roots=list(services.trust_roots),
        other_certs=list(services.other_certs),
        allow_fetching=True,
        revocation_mode="hard-fail",
        fetcher_backend=AIOHttpFetcherBackend(session),
    )


async def _with_validation_data(
    content_info: cms.ContentInfo, services: LevelServices, session: aiohttp.ClientSession
) -> cms.ContentInfo:
    """CAdES-T → CAdES-LT: validate the signer's and the TSA's certificates
    with pyhanko-certvalidator (which fetches the OCSP responses and CRLs),
    then put every certificate of both paths and that revocation data into
    SignedData.certificates / SignedData.crls (OCSP as `id-ri-ocsp-response`,
    RFC 5940) and into the certificate-values / revocation-values unsigned
    attributes. None of it is under the signature: the signed attributes are
    left byte for byte as signed."""
    signed: cms.SignedData = content_info["content"]
    signer_info = signed["signer_infos"][0]
    context = _context(services, session)
    tokens = [
        a["values"][0]["content"]
        for a in signer_info["unsigned_attrs"]
        if a["type"].native == "signature_time_stamp_token"
    ]
    certs: dict[bytes, x509.Certificate] = {}
    try:
        for data in [signed, *tokens]:
            info = extract_certificate_info(data)
            path = await CertificateValidator(
                info.signer_cert,
                intermediate_certs=list(info.other_certs),
                validation_context=context,
            ).async_validate_usage(set())  # type: ignore[no-untyped-call]
            for cert in path.iter_certs(include_root=True):
                certs.setdefault(cert.sha256, cert)
    except (PathBuildingError, PathValidationError) as e:
        raise ServiceUnavailableError(f"the validation data could not be gathered: {e}") from e
    ocsps = list(context.ocsps)
    crls = list(context.crls)
    for response in ocsps:  # the OCSP responder's own certificate
        basic = response["response_bytes"]["response"].parsed
        for cert in basic["certs"] or ():
            certs.setdefault(cert.sha256, cert)
    old = signed["certificates"]
    present = {c.chosen.sha256 for c in old if c.name == "certificate"} if old else set()
    signed["certificates"] = cms.CertificateSet(
        [*(old or ()), *(c for h, c in certs.items() if h not in present)]
    )
    signed["crls"] = cms.RevocationInfoChoices(
        [cms.RevocationInfoChoice(name="crl", value=c) for c in crls]
        + [
            cms.RevocationInfoChoice(
                name="other",
                value=cms.OtherRevocationInfoFormat(
                    {"other_rev_info_format": "ocsp_response", "other_rev_info": r}
                ),
            )
            for r in ocsps
        ]
    )
    revocation: dict[str, object] = {}
    if crls:
        revocation["crl_vals"] = crls
    if ocsps:
        revocation["ocsp_vals"] = [r["response_bytes"]["response"].parsed for r in ocsps]
    signer_info["unsigned_attrs"] = cms.CMSAttributes(
        [
            *signer_info["unsigned_attrs"],
            cms.CMSAttribute({"type": "certificate_values", "values": [list(certs.values())]}),
            cms.CMSAttribute({"type": "revocation_values", "values": [revocation]}),
        ]
    )
    return content_info


async def cades_detached(
    signer: HsmOwnerSigner,
    document_digest: bytes,
    hash_name: str,
    *,
    session: aiohttp.ClientSession,
    level: str = "B",
    services: LevelServices | None = None,
) -> bytes:
    """A detached CAdES signature (DER .p7s) over external content whose
    digest is given; level T adds an RFC 3161 signature time-stamp, LT the
    validation data of the signer and of the time-stamp (`_with_validation_data`).
    Only the digest is needed at every level: nothing of LT depends on the
    content."""
    if level not in CADES_LEVELS:
        raise ValidationError("CAdES is offered at levels B, T and LT", field="level")
    timestamper = None
    if level in ("T", "LT"):
        assert services is not None
        timestamper = HTTPTimeStamper(services.tsa_url, session=session)
    try:
        content_info = await signer.async_sign(
            document_digest,
            hash_name,
            use_pades=False,
            is_pdf_sig=False,
            timestamper=timestamper,
        )
        if level == "LT":
            assert services is not None
            content_info = await _with_validation_data(content_info, services, session)
    except (SigningError, aiohttp.ClientError) as e:
        raise ServiceUnavailableError(f"the signature could not be completed: {e}") from e
    return bytes(content_info.dump())


async def pades(
    signer: HsmOwnerSigner,
    pdf: bytes,
    field_name: str = "Signature1",
    *,
    session: aiohttp.ClientSession,
    level: str = "B",
    services: LevelServices | None = None,
) -> bytes:
    """A PAdES signature (B-B, B-T, B-LT or B-LTA), appended as an incremental
    update. B-LTA is B-LT (validation data in the DSS) plus a document
    time-stamp from this service's TSA over all of it, which pyHanko adds
    after the DSS. Run it on the `DocumentWorker` (pyHanko's PDF work is
    synchronous)."""
    if level not in LEVELS:
        raise ValidationError("level must be B, T, LT or LTA", field="level")
    try:
        writer = IncrementalPdfFileWriter(io.BytesIO(pdf), strict=False)
    except _BROKEN_PDF as e:
        raise ValidationError("the document is not a readable PDF", field="document") from e
    timestamper = None
    context = None
    if level in ("T", "LT", "LTA"):
        assert services is not None
        timestamper = HTTPTimeStamper(services.tsa_url, session=session)
    if level in ("LT", "LTA"):
        assert services is not None
        context = ValidationContext(
            trust_roots=list(services.trust_roots),
            other_certs=list(services.other_certs),
            allow_fetching=True,
            fetcher_backend=AIOHttpFetcherBackend(session),
        )
    meta = signers.PdfSignatureMetadata(
        field_name=field_name,
        subfilter=fields.SigSeedSubFilter.PADES,
        md_algorithm="sha256",
        embed_validation_info=level in ("LT", "LTA"),
        use_pades_lta=level == "LTA",
        validation_context=context,
    )
    out = io.BytesIO()
    try:
        await signers.async_sign_pdf(
            writer, meta, signer=signer, timestamper=timestamper, output=out
        )
    except (SigningError, aiohttp.ClientError) as e:
        raise ServiceUnavailableError(f"the signature could not be completed: {e}") from e
    except PdfError as e:
        raise ValidationError(f"the PDF cannot be signed: {e}", field="document") from e
    except _BROKEN_PDF as e:
        raise ValidationError("the PDF is malformed", field="document") from e
    return out.getvalue()


@dataclass(frozen=True)
class PdfTimestamps:
    """What a signed PDF's time-stamps say about its archival state."""

    signatures: int  # signatures other than document time-stamps
    long_term: bool  # has a DSS (validation data): LT or beyond
    document_timestamps: int
    #: When the certificate of the TSA of the newest time-stamp (document
    #: time-stamp, else the signature time-stamp) expires; None without one.
    last_tsa_expiry: datetime | None


def pdf_timestamps(pdf: bytes) -> PdfTimestamps:
    """Read a signed PDF's time-stamps (synchronous; for the worker)."""
    try:
        reader = PdfFileReader(io.BytesIO(pdf), strict=False)
        embedded = list(reader.embedded_signatures)
        long_term = "/DSS" in reader.root
    except _BROKEN_PDF as e:
        raise ValidationError("the document is not a readable PDF", field="document") from e
    doc_ts = [e for e in embedded if e.sig_object_type == "/DocTimeStamp"]
    sigs = [e for e in embedded if e.sig_object_type != "/DocTimeStamp"]
    expiry: datetime | None = None
    if doc_ts:
        newest = max(doc_ts, key=lambda e: e.signed_revision)
        expiry = extract_certificate_info(newest.signed_data).signer_cert.not_valid_after
    elif sigs:
        tokens = [
            a["values"][0]["content"]
            for a in sigs[-1].signer_info["unsigned_attrs"] or ()
            if a["type"].native == "signature_time_stamp_token"
        ]
        if tokens:
            expiry = extract_certificate_info(tokens[-1]).signer_cert.not_valid_after
    return PdfTimestamps(len(sigs), long_term, len(doc_ts), expiry)


async def pades_archive_timestamp(
    pdf: bytes, *, session: aiohttp.ClientSession, services: LevelServices
) -> bytes:
    """Extend a PAdES-LT/LTA document: pyHanko validates its newest document
    time-stamp (if any), adds that time-stamp's validation data to the DSS
    and appends a new document time-stamp from this service's TSA
    (`PdfTimeStamper.async_update_archival_timestamp_chain`)."""
    try:
        reader = PdfFileReader(io.BytesIO(pdf), strict=False)
    except _BROKEN_PDF as e:
        raise ValidationError("the document is not a readable PDF", field="document") from e
    stamper = signers.PdfTimeStamper(HTTPTimeStamper(services.tsa_url, session=session))
    out = io.BytesIO()
    try:
        await stamper.async_update_archival_timestamp_chain(
            reader, _context(services, session), in_place=False, output=out
        )
    except (SigningError, SignatureValidationError, aiohttp.ClientError) as e:
        raise ServiceUnavailableError(f"the time-stamp could not be added: {e}") from e
    return out.getvalue()


#: How long pyHanko may wait for the TSA or an OCSP/CRL fetch.
FETCH_TIMEOUT_SECONDS: Final = 30.0


class DocumentWorker:
    """A thread running its own event loop, where signatures over documents
    are built, and the HTTP session their network steps use.

    `await worker.run(fn)` runs `fn(session)` on the worker's loop and waits
    for it from the caller's; cancelling the caller cancels it there.
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"DocumentWorker(running={self._loop is not None})"

    async def start(self) -> None:
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="document-signer", daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread

        async def open_session() -> aiohttp.ClientSession:
            return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=FETCH_TIMEOUT_SECONDS))

        self._session = await self._submit(open_session())

    async def _submit(self, coro: Awaitable[T]) -> T:
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(_awaited(coro), self._loop)
        return await asyncio.wrap_future(future)

    async def run(self, fn: Callable[[aiohttp.ClientSession], Awaitable[T]]) -> T:
        if self._session is None:
            raise ServiceUnavailableError("the document signer is not running")
        return await self._submit(fn(self._session))

    async def close(self) -> None:
        loop, thread, session = self._loop, self._thread, self._session
        self._session = None
        if loop is None or thread is None:
            return
        if session is not None:
            await self._submit(session.close())
        loop.call_soon_threadsafe(loop.stop)
        await asyncio.to_thread(thread.join)
        loop.close()
        self._loop = self._thread = None


async def _awaited(awaitable: Awaitable[T]) -> T:
    return await awaitable
