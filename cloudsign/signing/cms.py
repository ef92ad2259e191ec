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
from typing import Final, TypeVar

import aiohttp
from asn1crypto import x509
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.sign import fields, signers
from pyhanko.sign.general import SigningError
from pyhanko.sign.timestamps.aiohttp_client import HTTPTimeStamper
from pyhanko_certvalidator import ValidationContext
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
#: LT (+ the certificates and OCSP/CRL data to validate it later; PAdES).
LEVELS: Final = ("B", "T", "LT")


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
    digest is given; level T adds an RFC 3161 signature time-stamp."""
    if level not in ("B", "T"):
        raise ValidationError("CAdES is offered at levels B and T", field="level")
    timestamper = None
    if level == "T":
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
    """A PAdES signature (B-B, B-T or B-LT), appended as an incremental update.
    Run it on the `DocumentWorker` (pyHanko's PDF work is synchronous)."""
    if level not in LEVELS:
        raise ValidationError("level must be B, T or LT", field="level")
    try:
        writer = IncrementalPdfFileWriter(io.BytesIO(pdf), strict=False)
    except _BROKEN_PDF as e:
        raise ValidationError("the document is not a readable PDF", field="document") from e
    timestamper = None
    context = None
    if level in ("T", "LT"):
        assert services is not None
        timestamper = HTTPTimeStamper(services.tsa_url, session=session)
    if level == "LT":
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
        embed_validation_info=level == "LT",
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
