"""The citizen's API for the face factor, authorisation, signing and the
personal cabinet (`/api/v1/me/...`), used by the portal and the mobile app.
Third-party signing clients use the CSC API (csc.py) instead."""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import Any

from aiohttp import web

from cloudsign.api_enrolment import current_owner
from cloudsign.appkeys import ENROLMENT, FACES, SETTINGS, SIGNING
from cloudsign.enrolment import parse_transport_message
from cloudsign.errors import UnauthorizedError, ValidationError
from cloudsign.http import bearer_token, field, problem, read_images, read_json
from cloudsign.status import REVOCATION
from hsm_bridge import UnsupportedAlgorithmError, hash_algorithm

routes = web.RouteTableDef()

MAX_ENROL_IMAGES = 3
MAX_BURST_FRAMES = 16


def _b64_list(data: dict[str, Any], name: str) -> list[bytes]:
    items = data.get(name)
    if not isinstance(items, list) or not items or not all(isinstance(i, str) for i in items):
        raise ValidationError(f"{name} must be a non-empty list of base64 strings", field=name)
    try:
        return [base64.b64decode(i, validate=True) for i in items]
    except (binascii.Error, ValueError) as e:
        raise ValidationError(f"{name} must be base64", field=name) from e


# -- face -----------------------------------------------------------------------


@routes.post("/api/v1/me/face")
async def enrol_face(request: web.Request) -> web.Response:
    """1..3 photos. Replacing an enrolled face needs a fresh TOTP code
    (`X-OTP` header), so a stolen access token cannot swap the face."""
    owner = await current_owner(request)
    settings = request.app[SETTINGS]
    if owner.face_enrolled and owner.totp_confirmed:
        await request.app[ENROLMENT].verify_otp(owner.id, request.headers.get("X-OTP"))
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
        owner.id, request.match_info["challenge_id"], frames
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
    data = await read_json(request)
    try:
        h = hash_algorithm(data.get("hash_algorithm", "sha256"))
    except UnsupportedAlgorithmError as e:
        raise ValidationError(e.message, field="hash_algorithm") from e
    sad, auth = await request.app[SIGNING].authorize(
        owner.id,
        request.match_info["credential_id"],
        hashes=_b64_list(data, "hashes"),
        hash_alg=h,
        num_signatures=None,
        password_key=parse_transport_message(field(data, "password_key", dict)),
        otp=data.get("otp"),
        face_challenge_id=data.get("face_challenge_id"),
        description=data.get("description") if isinstance(data.get("description"), str) else None,
    )
    expires_in = int((auth.expires_at - auth.created_at).total_seconds())
    return web.json_response({"SAD": sad, "expires_in": expires_in, "factors": list(auth.factors)})


@routes.post("/api/v1/me/credentials/{credential_id}/sign-hashes")
async def sign_hashes(request: web.Request) -> web.Response:
    owner = await current_owner(request)
    data = await read_json(request)
    try:
        h = hash_algorithm(data.get("hash_algorithm", "sha256"))
    except UnsupportedAlgorithmError as e:
        raise ValidationError(e.message, field="hash_algorithm") from e
    sigs = await request.app[SIGNING].sign_hashes(
        owner.id,
        request.match_info["credential_id"],
        data.get("SAD"),
        _b64_list(data, "hashes"),
        h,
        data.get("sign_algorithm") if isinstance(data.get("sign_algorithm"), str) else None,
    )
    return web.json_response({"signatures": [base64.b64encode(s).decode() for s in sigs]})


@routes.post("/api/v1/me/credentials/{credential_id}/sign-document")
async def sign_document(request: web.Request) -> web.Response:
    """JSON: {SAD, format: cades|pades, level: B|T|LT, name?, document? (base64),
    document_hash? (base64)}. Returns the .p7s (CAdES) or the signed PDF (PAdES)."""
    owner = await current_owner(request)
    settings = request.app[SETTINGS]
    data = await read_json(request, settings.max_upload_bytes)
    document = _b64_list({"d": [data["document"]]}, "d")[0] if data.get("document") else None
    document_hash = (
        _b64_list({"document_hash": [data["document_hash"]]}, "document_hash")[0]
        if data.get("document_hash")
        else None
    )
    name = data.get("name") if isinstance(data.get("name"), str) else None
    fmt = str(data.get("format", "cades"))
    signature_id, output = await request.app[SIGNING].sign_document(
        owner.id,
        request.match_info["credential_id"],
        data.get("SAD"),
        document=document,
        document_hash=document_hash,
        signature_format=fmt,
        name=name[:400] if name else None,
        level=str(data.get("level", "B")),
    )
    return _download(signature_id, fmt, name, output)


@routes.post("/api/v1/me/credentials/{credential_id}/revoke")
async def revoke_certificate(request: web.Request) -> web.Response:
    """The owner revokes their certificate after the same three factors as
    signing: {password_key, otp, face_challenge_id, reason?}."""
    owner = await current_owner(request)
    data = await read_json(request)
    reason = data.get("reason", "owner-request")
    if reason not in ("owner-request", "key-compromise", "affiliation-changed", "superseded"):
        raise ValidationError(
            "reason must be owner-request, key-compromise, affiliation-changed or superseded",
            field="reason",
        )
    signing = request.app[SIGNING]
    cred = await signing.credential(owner.id, request.match_info["credential_id"])
    await signing.verify_factors(
        cred,
        parse_transport_message(field(data, "password_key", dict)),
        data.get("otp"),
        data.get("face_challenge_id"),
    )
    revocation = await request.app[REVOCATION].revoke(
        cred.certificate_serial, reason, actor=f"owner:{owner.id}"
    )
    return web.json_response(revocation.to_json())


def _download(signature_id: str, fmt: str, name: str | None, output: bytes) -> web.Response:
    base = (name or signature_id).rsplit("/", 1)[-1].replace('"', "")
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
            "Content-Disposition": f'attachment; filename="{filename}"',
            "X-Signature-Id": signature_id,
        },
    )


# -- personal cabinet -----------------------------------------------------------


@routes.get("/api/v1/me/documents")
async def my_documents(request: web.Request) -> web.Response:
    owner = await current_owner(request)
    return web.json_response(await request.app[SIGNING].documents(owner.id, with_names=True))


@routes.get("/api/v1/me/documents/{signature_id}")
async def my_document(request: web.Request) -> web.Response:
    owner = await current_owner(request)
    fmt, name, output = await request.app[SIGNING].document(
        owner.id, request.match_info["signature_id"]
    )
    return _download(request.match_info["signature_id"], fmt, name, output)


@routes.get("/api/v1/audit/documents")
async def auditor_documents(request: web.Request) -> web.Response:
    """Read-only auditor view: every signed document, without document names."""
    token = request.app[SETTINGS].auditor_token
    if token is None or not _same(bearer_token(request), token.reveal()):
        raise UnauthorizedError("auditor token required")
    owner_id = request.query.get("owner_id")
    return web.json_response(await request.app[SIGNING].documents(owner_id, with_names=False))


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
