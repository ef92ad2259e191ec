"""The citizen's API for the face factor, authorisation, signing and the
personal cabinet (`/api/v1/me/...`), used by the portal and the mobile app.
Third-party signing clients use the CSC API (csc.py) instead."""

from __future__ import annotations

import base64
from typing import Final
from urllib.parse import quote

from aiohttp import web

from cloudsign.api_enrolment import current_owner, otp_field
from cloudsign.appkeys import ENROLMENT, FACES, SETTINGS, SIGNING
from cloudsign.enrolment import parse_transport_message
from cloudsign.errors import UnauthorizedError, ValidationError
from cloudsign.status import REVOCATION
from cloudsign.web.auth import bearer_token, same_token
from cloudsign.web.body import read_images, read_json
from cloudsign.web.inputs import Fields
from cloudsign.web.params import header_digits, path_id, query_text
from cloudsign.web.problems import problem
from hsm_bridge import HashAlgorithm, UnsupportedAlgorithmError, hash_algorithm

routes = web.RouteTableDef()

MAX_ENROL_IMAGES: Final = 3
MAX_BURST_FRAMES: Final = 16
#: The largest digest (SHA-512); the exact size is checked against the algorithm.
MAX_HASH_BYTES: Final = 64
MAX_DESCRIPTION_CHARS: Final = 500
MAX_DOCUMENT_NAME_CHARS: Final = 400
MAX_SAD_CHARS: Final = 128
REVOCATION_REASONS: Final = ("owner-request", "key-compromise", "affiliation-changed", "superseded")


def hash_field(body: Fields, key: str = "hash_algorithm") -> HashAlgorithm:
    """A hash algorithm by name or OID (default SHA-256)."""
    name = body.optional_text(key, max_len=64) or "sha256"
    try:
        return hash_algorithm(name)
    except UnsupportedAlgorithmError as e:
        raise ValidationError(e.message, field=body.name(key)) from e


def hashes_field(body: Fields, key: str, max_items: int) -> list[bytes]:
    return body.b64_list(key, max_items=max_items, max_bytes=MAX_HASH_BYTES)


# -- face -----------------------------------------------------------------------


@routes.post("/api/v1/me/face")
async def enrol_face(request: web.Request) -> web.Response:
    """1..3 photos. Replacing an enrolled face needs a fresh TOTP code
    (`X-OTP` header), so a stolen access token cannot swap the face."""
    owner = await current_owner(request)
    settings = request.app[SETTINGS]
    if owner.face_enrolled and owner.totp_confirmed:
        otp = header_digits(request, "X-OTP", min_len=6, max_len=8)
        await request.app[ENROLMENT].verify_otp(owner.id, otp)
    images = await read_images(
        request, field_name="image", max_count=MAX_ENROL_IMAGES, limit=settings.max_upload_bytes
    )
    return web.json_response(await request.app[FACES].enrol(owner.id, images), status=201)


@routes.post("/api/v1/me/face-challenges")
async def new_face_challenge(request: web.Request) -> web.Response:
    owner = await current_owner(request)
    return web.json_response(await request.app[FACES].new_challenge(owner.id), status=201)


@routes.post("/api/v1/me/face-challenges/{challenge_id}/burst")
async def face_burst(request: web.Request) -> web.Response:
    owner = await current_owner(request)
    frames = await read_images(
        request,
        field_name="frame",
        max_count=MAX_BURST_FRAMES,
        limit=request.app[SETTINGS].max_upload_bytes,
    )
    verdict = await request.app[FACES].submit_burst(
        owner.id, path_id(request, "challenge_id"), frames
    )
    if verdict["passed"]:
        return web.json_response(verdict)
    return problem(
        403,
        "Face check failed",
        f"the face check was refused: {verdict['reason']}",
        "face_check_failed",
        **verdict,
    )


# -- authorise and sign ---------------------------------------------------------


@routes.post("/api/v1/me/credentials/{credential_id}/authorize")
async def authorize(request: web.Request) -> web.Response:
    owner = await current_owner(request)
    settings = request.app[SETTINGS]
    body = await read_json(request)
    sad, auth = await request.app[SIGNING].authorize(
        owner.id,
        path_id(request, "credential_id"),
        hashes=hashes_field(body, "hashes", settings.max_signatures_per_sad),
        hash_alg=hash_field(body),
        num_signatures=None,
        password_key=parse_transport_message(body.obj("password_key")),
        otp=otp_field(body),
        face_challenge_id=body.optional_text("face_challenge_id", max_len=64),
        description=body.optional_text("description", max_len=MAX_DESCRIPTION_CHARS),
    )
    expires_in = int((auth.expires_at - auth.created_at).total_seconds())
    return web.json_response({"SAD": sad, "expires_in": expires_in, "factors": list(auth.factors)})


@routes.post("/api/v1/me/credentials/{credential_id}/sign-hashes")
async def sign_hashes(request: web.Request) -> web.Response:
    owner = await current_owner(request)
    settings = request.app[SETTINGS]
    body = await read_json(request, settings.max_upload_bytes)
    sigs = await request.app[SIGNING].sign_hashes(
        owner.id,
        path_id(request, "credential_id"),
        body.optional_text("SAD", max_len=MAX_SAD_CHARS),
        hashes_field(body, "hashes", settings.max_signatures_per_sad),
        hash_field(body),
        body.optional_text("sign_algorithm", max_len=64),
    )
    return web.json_response({"signatures": [base64.b64encode(s).decode() for s in sigs]})


@routes.post("/api/v1/me/credentials/{credential_id}/sign-document")
async def sign_document(request: web.Request) -> web.Response:
    """JSON: {SAD, format: cades|pades, level: B|T|LT, name?, document? (base64),
    document_hash? (base64)}. Returns the .p7s (CAdES) or the signed PDF (PAdES)."""
    owner = await current_owner(request)
    settings = request.app[SETTINGS]
    body = await read_json(request, settings.max_upload_bytes)
    name = body.optional_text("name", max_len=MAX_DOCUMENT_NAME_CHARS)
    fmt = body.choice("format", {"cades": "cades", "pades": "pades"}, default="cades")
    signature_id, output = await request.app[SIGNING].sign_document(
        owner.id,
        path_id(request, "credential_id"),
        body.optional_text("SAD", max_len=MAX_SAD_CHARS),
        document=body.optional_b64("document", max_bytes=settings.max_upload_bytes),
        document_hash=body.optional_b64("document_hash", max_bytes=MAX_HASH_BYTES),
        signature_format=fmt,
        name=name,
        level=body.choice("level", {"B": "B", "T": "T", "LT": "LT"}, default="B"),
    )
    return _download(signature_id, fmt, name, output)


@routes.post("/api/v1/me/credentials/{credential_id}/revoke")
async def revoke_certificate(request: web.Request) -> web.Response:
    """The owner revokes their certificate after the same three factors as
    signing: {password_key, otp, face_challenge_id, reason?}."""
    owner = await current_owner(request)
    body = await read_json(request)
    reason = body.choice("reason", {r: r for r in REVOCATION_REASONS}, default="owner-request")
    signing = request.app[SIGNING]
    cred = await signing.credential(owner.id, path_id(request, "credential_id"))
    await signing.verify_factors(
        cred,
        parse_transport_message(body.obj("password_key")),
        otp_field(body),
        body.optional_text("face_challenge_id", max_len=64),
    )
    revocation = await request.app[REVOCATION].revoke(
        cred.certificate_serial, reason, actor=f"owner:{owner.id}"
    )
    return web.json_response(revocation.to_json())


def _download(signature_id: str, fmt: str, name: str | None, output: bytes) -> web.Response:
    # A header value: no quote, no CR/LF or other control character, ASCII only
    # (the UTF-8 name goes in filename*, RFC 6266).
    base = (name or signature_id).rsplit("/", 1)[-1]
    if fmt == "pades":
        filename, ctype = f"{base.removesuffix('.pdf')}-signed.pdf", "application/pdf"
    elif fmt == "cades":
        filename, ctype = f"{base}.p7s", "application/pkcs7-signature"
    else:
        filename, ctype = f"{base}.sig", "application/octet-stream"
    return web.Response(
        body=output,
        content_type=ctype,
        headers={
            "Content-Disposition": content_disposition(filename),
            "X-Signature-Id": signature_id,
        },
    )


def content_disposition(filename: str) -> str:
    """`attachment` with an ASCII fallback name and the exact name in
    `filename*` (RFC 6266 / RFC 8187): nothing of the name can break the header."""
    printable = "".join(c for c in filename if c.isprintable())
    fallback = (
        "".join(c if c.isascii() and c not in '"\\' else "_" for c in printable) or "download"
    )
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(printable, safe='')}"


# -- personal cabinet -----------------------------------------------------------


@routes.get("/api/v1/me/documents")
async def my_documents(request: web.Request) -> web.Response:
    owner = await current_owner(request)
    return web.json_response(await request.app[SIGNING].documents(owner.id, with_names=True))


@routes.get("/api/v1/me/documents/{signature_id}")
async def my_document(request: web.Request) -> web.Response:
    owner = await current_owner(request)
    signature_id = path_id(request, "signature_id")
    fmt, name, output = await request.app[SIGNING].document(owner.id, signature_id)
    return _download(signature_id, fmt, name, output)


@routes.get("/api/v1/audit/documents")
async def auditor_documents(request: web.Request) -> web.Response:
    """Read-only auditor view: every signed document, without document names."""
    token = request.app[SETTINGS].auditor_token
    if token is None or not same_token(bearer_token(request), token.reveal()):
        raise UnauthorizedError("auditor token required")
    owner_id = query_text(request, "owner_id", max_len=64)
    return web.json_response(await request.app[SIGNING].documents(owner_id, with_names=False))
