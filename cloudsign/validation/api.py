"""HTTP surface of the validation service: `POST /api/v1/validate`, public
(relying parties call it without an account), counted per client address.

The body is JSON: `signature` (base64 of a signed PDF, of a CMS/CAdES
signature in DER or PEM, or of an XML document with an enveloped
XMLDSig/XAdES signature; which one is told by its content), and for a
detached CMS either `content` (base64 of the signed bytes) or
`content_sha256` (base64 of their SHA-256). The answer is the worker's
report (cloudsign/validation/worker.py) as JSON, or, for a request that
prefers `application/pdf` in its Accept header, the same report as a PDF for
people (cloudsign/validation/report_pdf.py, rendered in a thread of its own:
it is CPU work the event loop must not wait on). Errors stay problem+json."""

from __future__ import annotations

import asyncio
import functools
import hashlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

from aiohttp import web

from cloudsign.appkeys import CA, GUARD, STATUS
from cloudsign.errors import ValidationError
from cloudsign.validation.report_pdf import render
from cloudsign.validation.service import VALIDATION
from cloudsign.web.body import read_json
from cloudsign.web.client import client_address
from cloudsign.web.openapi import described

routes = web.RouteTableDef()

PDF: Final = "application/pdf"
JSON: Final = "application/json"
#: PDF reports are laid out here, one at a time, off the event loop and off
#: the default executor (a queue of reports never holds up its other users).
RENDERER: Final = ThreadPoolExecutor(max_workers=1, thread_name_prefix="report-pdf")

#: Room for the JSON around the base64 fields.
JSON_OVERHEAD_BYTES: Final = 4096

BODY_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["signature"],
    "additionalProperties": False,
    "properties": {
        "signature": {
            "type": "string",
            "contentEncoding": "base64",
            "description": (
                "a signed PDF, a CMS/CAdES signature (DER or PEM), or an XML document "
                "with an enveloped XMLDSig/XAdES signature (told apart by content)"
            ),
        },
        "content": {
            "type": "string",
            "contentEncoding": "base64",
            "description": "the content of a detached CMS signature",
        },
        "content_sha256": {
            "type": "string",
            "contentEncoding": "base64",
            "description": "or only the SHA-256 of that content (32 bytes)",
        },
    },
}


@routes.post("/api/v1/validate")
@described(body=BODY_SCHEMA)
async def validate(request: web.Request) -> web.Response:
    """Validate a signed PDF, a CMS or an XML signature; an ETSI EN 319 102-1 report,
    in JSON, or as a PDF for people when the Accept header prefers application/pdf."""
    service = request.app[VALIDATION]
    await request.app[GUARD].counted([(service.limit, client_address())], factor="validation")
    limit = service.max_bytes
    body = await read_json(request, 4 * ((limit + 2) // 3) + JSON_OVERHEAD_BYTES)
    body.only({"signature", "content", "content_sha256"})
    signature = body.b64("signature", max_bytes=limit, min_bytes=1)
    content = body.optional_b64("content", max_bytes=limit)
    digest = body.optional_b64("content_sha256", max_bytes=32, min_bytes=32)
    if content is not None and digest is not None:
        raise ValidationError("send content or content_sha256, not both", field="content")
    ca, status = request.app[CA], request.app[STATUS]
    report = await service.validate(
        signature,
        content=content,
        content_sha256=digest,
        trust_roots=[ca.root],
        other_certs=[
            ca.issuing,
            status.ocsp_identity.certificate,
            status.tsa_identity.certificate,
        ],
    )
    if not wants_pdf(request.headers.get("Accept")):
        return web.json_response(report, headers={"Vary": "Accept"})
    pdf = await asyncio.get_running_loop().run_in_executor(
        RENDERER,
        functools.partial(
            _pdf_report,
            report,
            signature,
            content,
            digest,
            f"{ca.profile.organisation} ({ca.profile.urls.base})",
        ),
    )
    return web.Response(
        body=pdf,
        content_type=PDF,
        headers={
            "Vary": "Accept",
            "Content-Disposition": 'attachment; filename="validation-report.pdf"',
            "Cache-Control": "no-store",
        },
    )


def _pdf_report(
    report: dict[str, Any],
    signature: bytes,
    content: bytes | None,
    content_sha256: bytes | None,
    service: str,
) -> bytes:
    """The PDF of `report`, with the SHA-256 of what was sent (hashing 20 MB
    is work for this thread too, not the event loop)."""
    if content is not None:
        content_sha256 = hashlib.sha256(content).digest()
    return render(
        report,
        file_sha256=hashlib.sha256(signature).hexdigest(),
        content_sha256=None if content_sha256 is None else content_sha256.hex(),
        service=service,
    )


def wants_pdf(accept: str | None) -> bool:
    """Whether an Accept header prefers the PDF: application/pdf with a
    quality above that of JSON (application/json, application/*, */*, by
    the most specific range that names it). JSON on a tie, and by default."""
    if not accept:
        return False
    pdf = json = 0.0
    json_rank = -1
    for part in accept.split(",")[:32]:
        media, _, params = part.partition(";")
        media = media.strip().lower()
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = min(max(float(value.strip()), 0.0), 1.0)
                except ValueError:
                    q = 0.0
        if media == PDF:
            pdf = max(pdf, q)
        rank = {JSON: 2, "application/*": 1, "*/*": 0}.get(media, -1)
        if rank > json_rank:
            json, json_rank = q, rank
        elif rank == json_rank and rank >= 0:
            json = max(json, q)
    return pdf > 0 and pdf > json
