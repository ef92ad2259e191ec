"""HTTP surface of the status services.

Protocol endpoints answer in their protocol's format, whatever happens:
- `GET /pki/crl/issuing.crl`, `/pki/crl/issuing-delta.crl`, `/pki/crl/root.crl`
  and `/pki/crl/{scope}/{number}.crl` (DER, application/pkix-crl);
- `POST /pki/ocsp` (application/ocsp-request) and `GET /pki/ocsp/{base64}`;
- `POST /tsa` (application/timestamp-query -> application/timestamp-reply).

Publication: `GET /pki` (JSON), `/pki/index.html`, `/pki/notices` (HTML),
`/pki/notices.json`, `/pki/notices.atom`, `/pki/ca/{ocsp,tsa}.{cer,pem}`.

Operator listener (a signed-in operator, problem+json errors):
`POST /operator/api/v1/revocations`, `/revocations/bulk`, `/notices`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import html
import xml.etree.ElementTree as ET
from typing import Final
from urllib.parse import unquote

from aiohttp import web

from cloudsign.appkeys import CA, STATUS, STATUS_OPERATIONS
from cloudsign.ca import to_pem
from cloudsign.errors import NotFoundError, ServiceUnavailableError
from cloudsign.operators import ApprovalPendingError, Role, current_operator, pending_response
from cloudsign.status.crl import ISSUING, ROOT
from cloudsign.status.notices import MAX_SERIALS as MAX_NOTICE_SERIALS
from cloudsign.status.notices import MAX_TEXT as MAX_NOTICE_TEXT
from cloudsign.status.notices import MAX_TITLE as MAX_NOTICE_TITLE
from cloudsign.status.notices import Notice
from cloudsign.status.ocsp import MALFORMED, MAX_REQUEST_BYTES
from cloudsign.status.tsa import MAX_REQUEST_BYTES as MAX_TSA_BYTES
from cloudsign.status.tsa import rejection
from cloudsign.web.body import read_json
from cloudsign.web.openapi import described

routes = web.RouteTableDef()

OCSP_REQUEST: Final = "application/ocsp-request"
OCSP_RESPONSE: Final = "application/ocsp-response"
TS_QUERY: Final = "application/timestamp-query"
TS_REPLY: Final = "application/timestamp-reply"
PKIX_CRL: Final = "application/pkix-crl"
#: Public pages load nothing and run nothing.
PAGE_HEADERS: Final = {
    "Content-Security-Policy": "default-src 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


async def _bounded_body(request: web.Request, limit: int) -> bytes | None:
    """The body, or None once it passes `limit` (nothing more is read)."""
    if request.content_length is not None:
        if request.content_length > limit:
            return None
        try:
            return await request.content.readexactly(request.content_length)
        except asyncio.IncompleteReadError:
            return None
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.content.iter_chunked(4096):
        total += len(chunk)
        if total > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


# -- CRLs --------------------------------------------------------------------


def _crl_response(der: bytes, max_age: int) -> web.Response:
    return web.Response(
        body=der,
        content_type=PKIX_CRL,
        headers={"Cache-Control": f"public, max-age={max_age}"},
    )


@routes.get("/pki/crl/{name:issuing|issuing-delta|root}.crl")
async def crl_latest(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    scope, kind = {
        "issuing": (ISSUING, "full"),
        "issuing-delta": (ISSUING, "delta"),
        "root": (ROOT, "full"),
    }[name]
    published = request.app[STATUS].crl.latest(scope, kind)
    if published is None:
        raise ServiceUnavailableError("no CRL has been published yet")
    return _crl_response(published.der, 60 if kind == "delta" else 300)


@routes.get(r"/pki/crl/{scope:issuing|root}/{number:\d{1,18}}.crl")
async def crl_by_number(request: web.Request) -> web.Response:
    published = await request.app[STATUS].crl.by_number(
        request.match_info["scope"], int(request.match_info["number"])
    )
    if published is None:
        raise NotFoundError("no CRL with this number")
    return _crl_response(published.der, 86400)


# -- OCSP --------------------------------------------------------------------


def _ocsp(der: bytes) -> web.Response:
    return web.Response(body=der, content_type=OCSP_RESPONSE)


@routes.post("/pki/ocsp")
@described(media_type=OCSP_REQUEST, response_type=OCSP_RESPONSE)
async def ocsp_post(request: web.Request) -> web.Response:
    if request.content_type != OCSP_REQUEST:
        return _ocsp(MALFORMED)
    body = await _bounded_body(request, MAX_REQUEST_BYTES)
    if body is None:
        return _ocsp(MALFORMED)
    return _ocsp(await request.app[STATUS].ocsp.respond(body))


@routes.get("/pki/ocsp/{request:.+}")
async def ocsp_get(request: web.Request) -> web.Response:
    # RFC 6960 A.1: url-encoding of base64(DER); read the raw path so that
    # '/' and '+' inside the base64 survive.
    raw = request.raw_path.split("?", 1)[0]
    encoded = unquote(raw[len("/pki/ocsp/") :])
    if len(encoded) > 2 * MAX_REQUEST_BYTES:
        return _ocsp(MALFORMED)
    try:
        body = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return _ocsp(MALFORMED)
    return _ocsp(await request.app[STATUS].ocsp.respond(body))


# -- TSA ---------------------------------------------------------------------


@routes.post("/tsa")
@described(media_type=TS_QUERY, response_type=TS_REPLY)
async def tsa(request: web.Request) -> web.Response:
    if request.content_type != TS_QUERY:
        der = rejection("bad_request", f"send {TS_QUERY}")
    else:
        body = await _bounded_body(request, MAX_TSA_BYTES)
        if body is None:
            der = rejection("bad_request", "request too large")
        else:
            der = await request.app[STATUS].tsa.respond(body)
    return web.Response(body=der, content_type=TS_REPLY)


# -- publication ---------------------------------------------------------------


@routes.get("/pki/ca/{which:ocsp|tsa}.cer")
async def service_cert_der(request: web.Request) -> web.Response:
    status = request.app[STATUS]
    which = request.match_info["which"]
    identity = status.ocsp_identity if which == "ocsp" else status.tsa_identity
    return web.Response(body=identity.certificate.dump(), content_type="application/pkix-cert")


@routes.get("/pki/ca/{which:ocsp|tsa}.pem")
async def service_cert_pem(request: web.Request) -> web.Response:
    status = request.app[STATUS]
    which = request.match_info["which"]
    identity = status.ocsp_identity if which == "ocsp" else status.tsa_identity
    return web.Response(text=to_pem(identity.certificate), content_type="application/x-pem-file")


def _listing(request: web.Request) -> dict[str, object]:
    status = request.app[STATUS]
    settings = status.settings
    ca = request.app[CA]
    out: dict[str, object] = dict(status.urls.listing())
    out["tsa_policy_oid"] = settings.tsa_policy_oid
    out["certificate_policy_oid"] = settings.ca_policy_oid
    out["crl_validity_hours"] = int(settings.crl_validity.total_seconds() // 3600)
    out["root_subject"] = ca.root.subject.human_friendly
    out["issuing_subject"] = ca.issuing.subject.human_friendly
    full = status.crl.latest(ISSUING)
    if full is not None:
        out["crl_number"] = full.number
        out["crl_next_update"] = full.next_update.isoformat()
    return out


@routes.get("/pki")
async def pki_json(request: web.Request) -> web.Response:
    return web.json_response(_listing(request))


_PAGE: Final = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title></head>
<body>
<h1>{title}</h1>
{body}
</body></html>
"""


def _page(title: str, body: str) -> web.Response:
    text = _PAGE.format(title=html.escape(title), body=body)
    return web.Response(text=text, content_type="text/html", headers=PAGE_HEADERS)


_LABELS: Final = {
    "root_certificate": "Root CA certificate",
    "issuing_certificate": "Issuing CA certificate",
    "ocsp_responder_certificate": "OCSP responder certificate",
    "tsa_certificate": "Time-stamping unit certificate",
    "crl": "CRL (complete, daily, valid 25 hours)",
    "delta_crl": "Delta CRL",
    "root_crl": "Root CA CRL",
    "ocsp": "OCSP responder (RFC 6960)",
    "tsa": "Time-stamping service (RFC 3161)",
    "notices": "Compromise notices",
    "notices_json": "Compromise notices (JSON)",
    "notices_atom": "Compromise notices (Atom feed)",
}


@routes.get("/pki/index.html")
async def pki_page(request: web.Request) -> web.Response:
    listing = _listing(request)
    items = []
    for key, label in _LABELS.items():
        url = html.escape(str(listing[key]))
        items.append(f'<li>{html.escape(label)}: <a href="{url}">{url}</a></li>')
    extra = (
        f"<p>Certificate policy {html.escape(str(listing['certificate_policy_oid']))}; "
        f"TSA policy {html.escape(str(listing['tsa_policy_oid']))}.</p>"
    )
    return _page(
        "Certification centre: public repository",
        "<ul>\n" + "\n".join(items) + "\n</ul>\n" + extra,
    )


def _notice_html(n: Notice) -> str:
    serials = ", ".join(html.escape(s) for s in n.serials) or "none"
    return (
        f'<article id="n-{html.escape(n.id)}">\n'
        f"<h2>{html.escape(n.title)}</h2>\n"
        f'<p><time datetime="{n.published_at.isoformat()}">'
        f"{html.escape(n.published_at.strftime('%Y-%m-%d %H:%M UTC'))}</time></p>\n"
        f"<h3>What happened</h3>\n<p>{html.escape(n.summary)}</p>\n"
        f"<h3>What we did</h3>\n<p>{html.escape(n.measures)}</p>\n"
        f"<p>Certificates concerned: {serials}</p>\n</article>"
    )


@routes.get("/pki/notices")
async def notices_page(request: web.Request) -> web.Response:
    notices = await request.app[STATUS].notices.latest()
    body = "\n".join(_notice_html(n) for n in notices) or "<p>No notices.</p>"
    links = (
        '<p><a href="/pki/notices.atom">Atom feed</a> · '
        '<a href="/pki/notices.json">JSON</a> · <a href="/pki/index.html">Repository</a></p>\n'
    )
    return _page("Key compromise notices", links + body)


@routes.get("/pki/notices.json")
async def notices_json(request: web.Request) -> web.Response:
    notices = await request.app[STATUS].notices.latest()
    return web.json_response({"notices": [n.to_json() for n in notices]})


@routes.get("/pki/notices.atom")
async def notices_atom(request: web.Request) -> web.Response:
    status = request.app[STATUS]
    notices = await status.notices.latest()
    ns = "http://www.w3.org/2005/Atom"
    feed = ET.Element("feed", xmlns=ns)
    ET.SubElement(feed, "title").text = "Key compromise notices"
    ET.SubElement(feed, "id").text = status.urls.notices
    ET.SubElement(feed, "link", rel="self", href=f"{status.urls.notices}.atom")
    ET.SubElement(feed, "link", rel="alternate", href=status.urls.notices)
    updated = notices[0].published_at.isoformat() if notices else "1970-01-01T00:00:00+00:00"
    ET.SubElement(feed, "updated").text = updated
    author = ET.SubElement(feed, "author")
    ET.SubElement(author, "name").text = status.settings.ca_organisation
    for n in notices:
        entry = ET.SubElement(feed, "entry")
        ET.SubElement(entry, "id").text = f"urn:uuid:{n.id}"
        ET.SubElement(entry, "title").text = n.title
        ET.SubElement(entry, "updated").text = n.published_at.isoformat()
        ET.SubElement(entry, "link", rel="alternate", href=f"{status.urls.notices}#n-{n.id}")
        ET.SubElement(entry, "summary").text = n.summary
        serials = ", ".join(n.serials) or "none"
        ET.SubElement(entry, "content", type="text").text = (
            f"What happened: {n.summary}\n\nWhat we did: {n.measures}\n\n"
            f"Certificates concerned: {serials}"
        )
    body = ET.tostring(feed, encoding="utf-8", xml_declaration=True)
    return web.Response(body=body, content_type="application/atom+xml", charset="utf-8")


# -- operators (the operator listener) ------------------------------------------------

#: Routes of the operator listener.
operator_routes = web.RouteTableDef()


@operator_routes.post("/operator/api/v1/revocations")
async def operator_revoke(request: web.Request) -> web.Response:
    """`{serial, reason[, reference]}`: revoked (201), or waiting for a
    second operator (202) on the ground of a CA compromise."""
    by = await current_operator(request, Role.REVOCATION)
    body = await read_json(request)
    body.only({"serial", "reason", "reference"})
    try:
        revocation = await request.app[STATUS_OPERATIONS].revoke(
            by,
            body.text("serial", max_len=128),
            body.text("reason", max_len=64),
            body.optional_text("reference", max_len=500),
        )
    except ApprovalPendingError as p:
        return pending_response(p)
    return web.json_response(revocation.to_json(), status=201)


@operator_routes.post("/operator/api/v1/revocations/bulk")
async def operator_revoke_many(request: web.Request) -> web.Response:
    """`{serials, reason[, reference]}`: more than `bulk_revocation_threshold`
    at once waits for a second operator (202)."""
    by = await current_operator(request, Role.REVOCATION)
    body = await read_json(request)
    body.only({"serials", "reason", "reference"})
    try:
        done = await request.app[STATUS_OPERATIONS].revoke_many(
            by,
            body.texts("serials", max_items=MAX_NOTICE_SERIALS, max_len=128, min_items=1),
            body.text("reason", max_len=64),
            body.optional_text("reference", max_len=500),
        )
    except ApprovalPendingError as p:
        return pending_response(p)
    return web.json_response({"revoked": [r.to_json() for r in done]}, status=201)


@operator_routes.post("/operator/api/v1/notices")
async def operator_notice(request: web.Request) -> web.Response:
    """`{title, summary, measures[, serials][, ca_compromise]}`; a
    CA-compromise notice waits for a second operator (202)."""
    by = await current_operator(request, Role.REVOCATION, Role.SECURITY)
    body = await read_json(request)
    body.only({"title", "summary", "measures", "serials", "ca_compromise"})
    try:
        notice = await request.app[STATUS_OPERATIONS].publish(
            by,
            title=body.text("title", max_len=MAX_NOTICE_TITLE),
            summary=body.text("summary", max_len=MAX_NOTICE_TEXT, multiline=True),
            measures=body.text("measures", max_len=MAX_NOTICE_TEXT, multiline=True),
            serials=body.texts("serials", max_items=MAX_NOTICE_SERIALS, max_len=128),
            ca_compromise=body.boolean("ca_compromise"),
        )
    except ApprovalPendingError as p:
        return pending_response(p)
    return web.json_response(notice.to_json(), status=201)
