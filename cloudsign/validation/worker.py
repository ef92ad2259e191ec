"""What runs in a validation worker process: untrusted bytes in, a report
(plain dict, ready for JSON) or a `Refused` out.

Every check is pyHanko's: `async_validate_pdf_signature` for PDFs,
`async_validate_detached_cms` for a CMS with its content (attached or
detached), and for a CMS with only its content's SHA-256 the same three
steps that function takes (`collect_timing_info`, `cms_basic_validation`,
`collect_signer_attr_status`) with the given digest. Trust comes from a
`pyhanko_certvalidator.ValidationContext` whose only trust roots are this
CA's; revocation is hard-fail. Nothing here verifies a signature, a
time-stamp or a chain by hand: this module only reads pyHanko's results and
names them with ETSI EN 319 102-1's indications.

An XML document with an enveloped XMLDSig/XAdES signature (`_xml`) is read
and its maths checked by signxml (cloudsign/validation/xmldsig.py: parsed
with no entities, no DTD, no network); the signer's chain and revocation are
pyhanko-certvalidator's (`validate_cert_usage`, the CMS path's own step), and
a `xades:SignatureTimeStamp` is pyHanko's `validate_tst_signed_data` with the
imprint over the canonicalised `ds:SignatureValue`, so the same rules below
apply to it.

Validation data comes from what the signature embeds (a PDF's DSS) and from
this service's own OCSP responder and CRLs, fetched over HTTP from its public
URL. The worker is a separate process, so the service's event loop is free to
answer those fetches while its request waits; the session refuses every URL
that is not under the public URL, so a crafted certificate's AIA or CRL
distribution point cannot make the service fetch from anywhere else.

Once it passes the signing certificate's revocation, a signature with a
verified signature time-stamp is validated again at the time-stamp's time
(`moment`, `retroactive_revinfo`, as tests/signing/test_long_term.py does):
that time is its proof of existence. A certificate revoked before that time
is TOTAL-FAILED/REVOKED (EN 319 102-1 5.5, the best-signature-time is after
the revocation); revoked without such proof it stays INDETERMINATE/
REVOKED_NO_POE, as pyHanko reports it.

An ASiC-E container (a ZIP, told by its local header magic before anything
else) is read in bounded memory by cloudsign/validation/asic.py; each
manifest's CAdES signature goes through the CMS path above with the
manifest as its detached content, and each file the manifest names is
checked against its digest (`_asic`): a mismatch is TOTAL-FAILED/
HASH_FAILURE, a named file missing INDETERMINATE/SIGNED_DATA_NOT_FOUND, and
a file no manifest names is reported as not covered.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import hashlib
import io
import logging
import os
import resource
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final

import aiohttp
from asn1crypto import cms, core, pem, x509
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.ades.report import AdESFailure, AdESIndeterminate
from pyhanko.sign.general import extract_certificate_info
from pyhanko.sign.validation import DocumentSecurityStore, async_validate_pdf_signature
from pyhanko.sign.validation.errors import NoDSSFoundError, SignatureValidationError
from pyhanko.sign.validation.generic_cms import (
    async_validate_detached_cms,
    cms_basic_validation,
    collect_signer_attr_status,
    collect_timing_info,
    validate_cert_usage,
    validate_tst_signed_data,
)
from pyhanko.sign.validation.status import (
    PdfSignatureStatus,
    RevocationDetails,
    SignatureCoverageLevel,
    StandardCMSSignatureStatus,
    TimestampSignatureStatus,
)
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.fetchers.aiohttp_fetchers import AIOHttpFetcherBackend
from pyhanko_certvalidator.path import ValidationPath

from cloudsign.validation.asic import AsicError, looks_like_zip, read_container
from cloudsign.validation.xmldsig import XmlRefused, looks_like_xml, read_signature, verify_maths

PASSED: Final = "TOTAL-PASSED"
FAILED: Final = "TOTAL-FAILED"
INDETERMINATE: Final = "INDETERMINATE"
_RANK: Final = {PASSED: 0, INDETERMINATE: 1, FAILED: 2}

#: A worker's address space: a crafted file that inflates is a MemoryError, not the host's OOM.
MAX_WORKER_MEMORY_BYTES: Final = 3 << 30
#: Signatures reported from one PDF; more is refused as unsupported.
MAX_PDF_SIGNATURES: Final = 16
#: How long one OCSP/CRL fetch from this service may take.
FETCH_TIMEOUT_SECONDS: Final = 10.0
#: CAdES unsigned attributes that raise the level (ETSI EN 319 122-1).
_REVOCATION_VALUES: Final = "1.2.840.113549.1.9.16.2.24"
_CERTIFICATE_VALUES: Final = "1.2.840.113549.1.9.16.2.23"
_ARCHIVE_TIMESTAMP_V3: Final = "0.4.0.1733.2.4"
_PR_SET_PDEATHSIG: Final = 1


@dataclass(frozen=True)
class Job:
    """One validation: the untrusted bytes and what the service trusts."""

    signature: bytes
    content: bytes | None
    content_sha256: bytes | None
    trust_roots: tuple[bytes, ...]  # DER: this CA's root(s)
    other_certs: tuple[bytes, ...]  # DER: issuing CA, OCSP responder, TSA
    fetch_prefix: str  # only URLs under it are fetched: this service's OCSP/CRLs

    def __repr__(self) -> str:
        return f"Job(signature={len(self.signature)} bytes)"


@dataclass(frozen=True)
class Refused:
    """The input cannot be validated: `code` is `malformed`, `too_deep`,
    `too_large`, `no_signature` or `unsupported`."""

    code: str
    detail: str


class _Unreadable(Exception):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def init_worker(parent_pid: int) -> None:
    """Die with the service, and cap the address space."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(0)
    # pyHanko logs every refused path with its traceback; the report says it.
    logging.getLogger("pyhanko").setLevel(logging.CRITICAL)
    logging.getLogger("pyhanko_certvalidator").setLevel(logging.CRITICAL)
    with contextlib.suppress(ValueError, OSError):  # a lower hard limit is already in place
        resource.setrlimit(resource.RLIMIT_AS, (MAX_WORKER_MEMORY_BYTES, MAX_WORKER_MEMORY_BYTES))


def ping() -> bool:
    """Warm-up: the imports above are done once the worker answers."""
    return True


def validate(job: Job) -> dict[str, Any] | Refused:
    """The worker's entry point: never raises for what the input contains."""
    try:
        return asyncio.run(_validate(job))
    except _Unreadable as e:
        return Refused(e.code, e.detail)
    except RecursionError:
        return Refused("too_deep", "the input is nested too deeply")
    except MemoryError:
        return Refused("too_large", "the input needs more memory than a validation may use")
    except SignatureValidationError as e:  # pyHanko's refusal of a structure it cannot validate
        return Refused("malformed", f"the signature cannot be validated: {e.failure_message}")
    except Exception as e:  # noqa: BLE001 - hostile input reaches every builtin of the parsers
        return Refused("malformed", f"the input could not be read ({type(e).__name__})")


async def _validate(job: Job) -> dict[str, Any]:
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=FETCH_TIMEOUT_SECONDS),
        middlewares=(_only_under(job.fetch_prefix),),
    ) as session:
        fetchers = AIOHttpFetcherBackend(session)
        if looks_like_zip(job.signature):  # first: a stored PDF shows %PDF- early on
            if job.content is not None or job.content_sha256 is not None:
                raise _Unreadable(
                    "malformed", "an ASiC-E container carries its files; send it alone"
                )
            return await _asic(job, fetchers)
        if _is_pdf(job.signature):
            if job.content is not None or job.content_sha256 is not None:
                raise _Unreadable("malformed", "a signed PDF carries its content; send it alone")
            return await _pdf(job, fetchers)
        if looks_like_xml(job.signature):
            if job.content is not None or job.content_sha256 is not None:
                raise _Unreadable(
                    "malformed", "an enveloped XML signature carries its document; send it alone"
                )
            return await _xml(job, fetchers)
        return await _cms(job, fetchers)


def _only_under(prefix: str) -> Any:
    base = prefix.rstrip("/") + "/"

    async def middleware(
        request: aiohttp.ClientRequest,
        handler: Callable[[aiohttp.ClientRequest], Awaitable[aiohttp.ClientResponse]],
    ) -> aiohttp.ClientResponse:
        if not str(request.url).startswith(base):
            raise aiohttp.ClientConnectionError("only this service's own URLs are fetched")
        return await handler(request)

    return middleware


def _is_pdf(data: bytes) -> bool:
    return b"%PDF-" in data[:1024]


# -- contexts --------------------------------------------------------------------


def _context_kwargs(
    job: Job, fetchers: AIOHttpFetcherBackend, moment: datetime | None
) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "trust_roots": [x509.Certificate.load(der) for der in job.trust_roots],
        "other_certs": [x509.Certificate.load(der) for der in job.other_certs],
        "revocation_mode": "hard-fail",
        "allow_fetching": True,
        "fetcher_backend": fetchers,
    }
    if moment is not None:
        kwargs["moment"] = moment
        kwargs["retroactive_revinfo"] = True
    return kwargs


# -- PDF ---------------------------------------------------------------------------


async def _pdf(job: Job, fetchers: AIOHttpFetcherBackend) -> dict[str, Any]:
    try:
        reader = PdfFileReader(io.BytesIO(job.signature), strict=False)
        embedded = list(reader.embedded_signatures)
    except (RecursionError, MemoryError):
        raise
    except Exception as e:
        detail = f"the document is not a readable PDF ({type(e).__name__})"
        raise _Unreadable("malformed", detail) from e
    signatures = [e for e in embedded if e.sig_object_type != "/DocTimeStamp"]
    doc_timestamps = [e for e in embedded if e.sig_object_type == "/DocTimeStamp"]
    if not signatures:
        raise _Unreadable("no_signature", "the PDF has no signature")
    if len(embedded) > MAX_PDF_SIGNATURES:
        raise _Unreadable("unsupported", f"more than {MAX_PDF_SIGNATURES} signatures in one PDF")
    try:
        dss: DocumentSecurityStore | None = DocumentSecurityStore.read_dss(reader)
    except NoDSSFoundError:
        dss = None

    def context(moment: datetime | None) -> ValidationContext:
        kwargs = _context_kwargs(job, fetchers, moment)
        if dss is not None:
            return dss.as_validation_context(kwargs)
        return ValidationContext(**kwargs)

    reports = []
    for index, sig in enumerate(signatures):
        first = await async_validate_pdf_signature(sig, context(None))
        status = first
        ts = _verified_timestamp(first)
        if ts is not None:
            status = await async_validate_pdf_signature(sig, context(ts))
        report = _signature_report(sig.field_name or f"signature-{index + 1}", first, status, ts)
        level = "B-T" if first.timestamp_validity is not None else "B-B"
        if level == "B-T" and dss is not None:
            level = "B-LT"
        if level == "B-LT" and any(t.signed_revision > sig.signed_revision for t in doc_timestamps):
            level = "B-LTA"
        report["level"] = level
        report["coverage"] = _coverage(sig.sig_object, status)
        if report["indication"] == PASSED and not status.bottom_line:
            # Intact, valid and trusted, but the document was changed after
            # it in a way its permissions (DocMDP) or pyHanko's diff policy refuse.
            report["indication"] = INDETERMINATE
            report["sub_indication"] = "SIG_CONSTRAINTS_FAILURE"
        reports.append(report)
    return _overall("PAdES", reports)


def _coverage(sig_object: Any, status: PdfSignatureStatus) -> dict[str, Any]:
    numbers = [int(n) for n in sig_object["/ByteRange"]]
    ranges = [
        {"start": numbers[i], "length": numbers[i + 1]} for i in range(0, len(numbers) - 1, 2)
    ]
    modification = status.modification_level
    return {
        "byte_ranges": ranges,
        "whole_document": status.coverage == SignatureCoverageLevel.ENTIRE_FILE,
        "level": status.coverage.name if status.coverage is not None else None,
        "modifications": modification.name if modification is not None else None,
    }


# -- CMS ---------------------------------------------------------------------------


def _load_cms(data: bytes) -> cms.SignedData:
    der = data
    if data.lstrip()[:11] == b"-----BEGIN ":
        try:
            _, _, der = pem.unarmor(data.strip())
        except ValueError as e:
            raise _Unreadable("malformed", "the PEM armour is broken") from e
    try:
        info = cms.ContentInfo.load(der, strict=True)
        kind = info["content_type"].native
        if kind != "signed_data":
            raise _Unreadable("unsupported", "expected a PDF or a CMS SignedData")
        signed: cms.SignedData = info["content"]
        signers = len(signed["signer_infos"])
    except _Unreadable:
        raise
    except (RecursionError, MemoryError):
        raise
    except Exception as e:
        raise _Unreadable("malformed", "expected a PDF or a CMS signature (DER or PEM)") from e
    if signers != 1:
        raise _Unreadable("unsupported", "a CMS with exactly one signer is validated")
    return signed


async def _cms(job: Job, fetchers: AIOHttpFetcherBackend) -> dict[str, Any]:
    signed = _load_cms(job.signature)
    encap = signed["encap_content_info"]
    attached = not isinstance(encap["content"], core.Void)
    if attached and (job.content is not None or job.content_sha256 is not None):
        raise _Unreadable("malformed", "the signature carries its content; send it alone")
    if not attached and job.content is None and job.content_sha256 is None:
        raise _Unreadable(
            "malformed", "a detached signature: send its content or content_sha256 too"
        )
    signer_info = signed["signer_infos"][0]
    digest_name = signer_info["digest_algorithm"]["algorithm"].native
    if job.content_sha256 is not None and digest_name != "sha256":
        raise _Unreadable(
            "unsupported", f"the signature is over a {digest_name} digest; send the content"
        )

    def content_digest(algorithm: str) -> bytes:
        if job.content_sha256 is not None:
            if algorithm != "sha256":
                raise _Unreadable("unsupported", f"a {algorithm} digest needs the content")
            return job.content_sha256
        return hashlib.new(algorithm, encap["content"].native).digest()

    async def run(moment: datetime | None) -> StandardCMSSignatureStatus:
        ctx = ValidationContext(**_context_kwargs(job, fetchers, moment))
        if job.content is not None:
            return await async_validate_detached_cms(
                job.content, signed, signer_validation_context=ctx
            )
        return await _validate_by_digest(signed, content_digest, ctx, attached=attached)

    first = await run(None)
    status = first
    ts = _verified_timestamp(first)
    if ts is not None:
        status = await run(ts)
    report = _signature_report("signer-1", first, status, ts)
    report["level"] = _cades_level(signer_info)
    report["content"] = (
        "attached" if attached else ("detached" if job.content is not None else "sha256 digest")
    )
    return _overall("CAdES", [report])


async def _validate_by_digest(
    signed: cms.SignedData,
    content_digest: Callable[[str], bytes],
    ctx: ValidationContext,
    *,
    attached: bool,
) -> StandardCMSSignatureStatus:
    """`async_validate_detached_cms` for a content known by its digest (given,
    or of the content the CMS encapsulates, which that function refuses): the
    same pyHanko steps, given the digest instead of hashing a detached content."""
    signer_info = signed["signer_infos"][0]
    # Attached: pyHanko hashes the encapsulated content itself.
    digest = (
        None if attached else content_digest(signer_info["digest_algorithm"]["algorithm"].native)
    )
    kwargs = await collect_timing_info(
        signer_info, ts_validation_context=ctx, raw_digest=content_digest
    )
    kwargs = await cms_basic_validation(
        signed,
        raw_digest=digest,
        validation_context=ctx,
        status_kwargs=kwargs,
        key_usage_settings=StandardCMSSignatureStatus.default_usage_constraints(None),
    )
    cert_info = extract_certificate_info(signed)
    kwargs.update(
        await collect_signer_attr_status(
            sd_attr_certificates=cert_info.attribute_certs,
            signer_cert=cert_info.signer_cert,
            validation_context=None,
            sd_signed_attrs=signer_info["signed_attrs"],
        )
    )
    return StandardCMSSignatureStatus(**kwargs)


def _cades_level(signer_info: cms.SignerInfo) -> str:
    unsigned = signer_info["unsigned_attrs"]
    types = set() if isinstance(unsigned, core.Void) else {a["type"].dotted for a in unsigned}
    if "1.2.840.113549.1.9.16.2.14" not in types:  # signature-time-stamp-token
        return "B-B"
    if not {_REVOCATION_VALUES, _CERTIFICATE_VALUES} <= types:
        return "B-T"
    return "B-LTA" if _ARCHIVE_TIMESTAMP_V3 in types else "B-LT"


# -- ASiC-E ------------------------------------------------------------------------


async def _asic(job: Job, fetchers: AIOHttpFetcherBackend) -> dict[str, Any]:
    """Each manifest's CAdES signature by `_cms` over the manifest, then its
    files' digests; which files of the container are covered."""
    try:
        container = read_container(job.signature)
    except AsicError as e:
        raise _Unreadable(e.code, e.detail) from e
    reports = []
    for signed in container.signatures:
        cades = await _cms(
            replace(job, signature=signed.signature, content=signed.manifest, content_sha256=None),
            fetchers,
        )
        (report,) = cades["signatures"]
        report["id"] = signed.signature_name
        report["manifest"] = signed.manifest_name
        report["references"] = [
            {
                "name": r.name,
                "mime_type": r.mime_type,
                "digest_algorithm": r.algorithm,
                "found": r.found,
                "digest_matches": r.matches,
            }
            for r in signed.references
        ]
        if report["indication"] != FAILED:
            if any(r.found and not r.matches for r in signed.references):
                report["indication"], report["sub_indication"] = FAILED, "HASH_FAILURE"
            elif not all(r.found for r in signed.references):
                report["indication"] = INDETERMINATE
                report["sub_indication"] = "SIGNED_DATA_NOT_FOUND"
        reports.append(report)
    result = _overall("ASiC-E", reports)
    result["container"] = {
        "type": "ASiC-E",
        "signature_format": "CAdES",
        "mimetype_ok": container.mimetype_ok,
        "all_files_covered": all(f in container.covered for f in container.files),
        "files": [
            {
                "name": f,
                "covered": f in container.covered,
                "signatures": [
                    s.signature_name
                    for s in container.signatures
                    if any(r.name == f for r in s.references)
                ],
            }
            for f in container.files
        ],
    }
    return result


# -- XML ---------------------------------------------------------------------------


@dataclass(frozen=True)
class XmlStatus:
    """What `_signature_report` reads of a pyHanko status, for an XML
    signature: signxml's maths, pyhanko-certvalidator's chain and
    revocation, pyHanko's time-stamp validation."""

    intact: bool
    valid: bool
    signing_cert: x509.Certificate
    trust_problem_indic: AdESIndeterminate | AdESFailure | None
    validation_path: ValidationPath | None
    revocation_details: RevocationDetails | None
    signer_reported_dt: datetime | None
    timestamp_validity: TimestampSignatureStatus | None
    md_algorithm: str | None
    validation_time: datetime | None

    @property
    def trusted(self) -> bool:
        return (
            self.valid
            and self.intact
            and self.trust_problem_indic is None
            and self.validation_path is not None
        )


async def _xml(job: Job, fetchers: AIOHttpFetcherBackend) -> dict[str, Any]:
    """An enveloped XMLDSig/XAdES signature: the maths by signxml, then the
    signer's chain and revocation and the signature time-stamp as for CMS,
    and again at the time-stamp's time once it verifies."""
    try:
        info = read_signature(job.signature)
        maths = verify_maths(job.signature, info)
    except XmlRefused as e:
        raise _Unreadable(e.code, e.detail) from e
    others = [c for c in info.certificates if c is not maths.signer]

    def hash_of(algorithm: str, data: bytes) -> bytes:
        return hashlib.new(algorithm, data).digest()

    async def stamp(ctx: ValidationContext) -> TimestampSignatureStatus | None:
        found = None
        for ts in info.timestamps:
            kwargs = await validate_tst_signed_data(ts.token, ctx, ts.imprint(hash_of))
            found = TimestampSignatureStatus(**kwargs)
            if found.intact and found.valid and found.trusted:
                break
        return found

    async def run(moment: datetime | None, ts_status: TimestampSignatureStatus | None) -> XmlStatus:
        ctx = ValidationContext(**_context_kwargs(job, fetchers, moment))
        if ts_status is None and moment is None:
            ts_status = await stamp(ctx)
        problem: AdESIndeterminate | AdESFailure | None = None
        path = details = None
        if maths.intact and maths.valid and not maths.signer_named:
            problem = AdESIndeterminate.NO_SIGNING_CERTIFICATE_FOUND
        elif maths.intact and maths.valid:
            ctx.certificate_registry.register_multiple(others)
            result = await validate_cert_usage(
                maths.signer,
                ctx,
                key_usage_settings=StandardCMSSignatureStatus.default_usage_constraints(None),
                paths=ctx.path_builder.async_build_paths_lazy(maths.signer),
            )
            problem = result.error_subindic
            details = result.revo_details
            path = result.success_result or result.error_path
        return XmlStatus(
            intact=maths.intact,
            valid=maths.valid,
            signing_cert=maths.signer,
            trust_problem_indic=problem,
            validation_path=path,
            revocation_details=details,
            signer_reported_dt=info.claimed_signing_time,
            timestamp_validity=ts_status,
            md_algorithm=info.digest_algorithm,
            validation_time=ctx.moment,
        )

    first = await run(None, None)
    status = first
    ts = _verified_timestamp(first)
    if ts is not None:
        status = await run(ts, first.timestamp_validity)
    report = _signature_report("signature-1", first, status, ts)
    if info.xades:
        report["level"] = "B-T" if info.timestamps else "B-B"
    else:
        report["level"] = None
    report["coverage"] = info.coverage
    return _overall("XAdES" if info.xades else "XMLDSig", [report])


# -- the report --------------------------------------------------------------------


def _verified_timestamp(status: StandardCMSSignatureStatus | XmlStatus) -> datetime | None:
    ts = status.timestamp_validity
    if ts is not None and ts.intact and ts.valid and ts.trusted:
        return ts.timestamp
    return None


def _cert(cert: x509.Certificate) -> dict[str, Any]:
    return {
        "subject": cert.subject.human_friendly,
        "serial": format(cert.serial_number, "x"),
        "issuer": cert.issuer.human_friendly,
        "not_before": _iso(cert.not_valid_before),
        "not_after": _iso(cert.not_valid_after),
    }


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def _signature_report(
    name: str,
    first: StandardCMSSignatureStatus | XmlStatus,
    status: StandardCMSSignatureStatus | XmlStatus,
    ts: datetime | None,
) -> dict[str, Any]:
    """`first` is the validation now; `status` the one at the verified
    time-stamp's time (the same as `first` without one)."""
    indication, sub = _indication(status, ts)
    path = status.validation_path
    chain = [] if path is None else [_cert(c) for c in path.iter_certs(include_root=True)][::-1]
    details = status.revocation_details
    if details is not None:
        revocation: dict[str, Any] = {
            "status": "revoked",
            "revoked_at": _iso(details.revocation_date),
            "reason": details.revocation_reason.native,
            "ca_revoked": details.ca_revoked,
        }
    else:
        revocation = {"status": "good" if status.trusted else "unknown"}
    revocation["checked_at"] = _iso(ts or status.validation_time)
    stamp = first.timestamp_validity
    return {
        "id": name,
        "indication": indication,
        "sub_indication": sub,
        "signer": _cert(status.signing_cert),
        "claimed_signing_time": _iso(status.signer_reported_dt),
        "signature_timestamp": None
        if stamp is None
        else {
            "time": _iso(stamp.timestamp),
            "verified": ts is not None,
            "tsa": stamp.signing_cert.subject.human_friendly,
        },
        "chain": chain,
        "revocation": revocation,
        "digest_algorithm": status.md_algorithm,
        "checks": {
            "intact": status.intact,
            "signature_valid": status.valid,
            "trusted": status.trusted,
        },
    }


def _indication(
    status: StandardCMSSignatureStatus | XmlStatus, ts: datetime | None
) -> tuple[str, str | None]:
    if not status.intact:
        return FAILED, "HASH_FAILURE"
    if not status.valid:
        return FAILED, "SIG_CRYPTO_FAILURE"
    problem = status.trust_problem_indic
    if problem is None:
        return (PASSED, None) if status.trusted else (INDETERMINATE, "GENERIC")
    details = status.revocation_details
    if (
        problem == AdESIndeterminate.REVOKED_NO_POE
        and details is not None
        and ts is not None
        and details.revocation_date <= ts
    ):
        return FAILED, "REVOKED"
    if isinstance(problem, AdESFailure):
        return FAILED, problem.name
    return INDETERMINATE, str(getattr(problem, "name", problem))


def _overall(kind: str, reports: list[dict[str, Any]]) -> dict[str, Any]:
    worst = max(reports, key=lambda r: _RANK[r["indication"]])
    return {
        "indication": worst["indication"],
        "sub_indication": worst["sub_indication"],
        "format": kind,
        "validation_time": datetime.now(UTC).isoformat(),
        "signatures": reports,
    }
