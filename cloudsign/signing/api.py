"""The citizen's API for authorisation, signing and the personal cabinet
(`/api/v1/me/...`), used by the portal and the mobile app. Third-party
signing clients use the CSC API (csc.py) instead."""

from __future__ import annotations

import base64
from typing import Any, Final
from urllib.parse import quote

from aiohttp import web

from cloudsign.accounts import current_owner, possession_from
from cloudsign.appkeys import CABINET, CREDENTIALS, REVOCATION, SETTINGS, SIGNING
from cloudsign.credentials import parse_transport_message
from cloudsign.errors import ValidationError
from cloudsign.operators import Role, current_operator
from cloudsign.signing import asic
from cloudsign.signing.cabinet import SignedDocument
from cloudsign.signing.service import AuthorizeRequest, DocumentRequest
from cloudsign.web.body import read_json
from cloudsign.web.inputs import Fields
from cloudsign.web.openapi import described
from cloudsign.web.params import path_id, query_text
from hsm_bridge import HashAlgorithm, UnsupportedAlgorithmError, hash_algorithm

routes = web.RouteTableDef()

#: The largest digest (SHA-512); the exact size is checked against the algorithm.
MAX_HASH_BYTES: Final = 64
MAX_DESCRIPTION_CHARS: Final = 500
MAX_DOCUMENT_NAME_CHARS: Final = 400
MAX_SAD_CHARS: Final = 128
MAX_FACE_CHECK_ID: Final = 64
REVOCATION_REASONS: Final = ("owner-request", "key-compromise", "affiliation-changed", "superseded")
FORMATS: Final = {"cades": "cades", "pades": "pades", "xades": "xades"}
LEVELS: Final = {"B": "B", "T": "T", "LT": "LT", "LTA": "LTA"}
CONTAINERS: Final = {"asic-e": "asic-e"}


def hash_field(body: Fields, key: str = "hash_algorithm") -> HashAlgorithm:
    """A hash algorithm by name or OID (default SHA-256)."""
    name = body.optional_text(key, max_len=64) or "sha256"
    try:
        return hash_algorithm(name)
    except UnsupportedAlgorithmError as e:
        raise ValidationError(e.message, field=body.name(key)) from e


def hashes_field(body: Fields, key: str, max_items: int) -> list[bytes]:
    return body.b64_list(key, max_items=max_items, max_bytes=MAX_HASH_BYTES)


# -- authorise and sign ---------------------------------------------------------


_B64 = {"type": "string", "pattern": "^[A-Za-z0-9+/]{43}=$"}  # a SHA-256 in base64
_BASE64 = {"type": "string", "pattern": "^[A-Za-z0-9+/]*={0,2}$", "maxLength": 400}
_HASHES = {"type": "array", "items": _B64, "minItems": 1, "maxItems": 8}
_HASH_ALGORITHM = {"type": "string", "enum": ["sha256", "sha384", "sha512"]}
#: `password_key`: K_pw wrapped for a one-time transport key (see the README).
TRANSPORT_MESSAGE_SCHEMA: Final = {
    "type": "object",
    "properties": {
        "transport_key_id": {"type": "string", "maxLength": 64},
        "device_public_key": _BASE64,
        "wrapped_key": _BASE64,
    },
    "required": ["transport_key_id", "device_public_key", "wrapped_key"],
    "additionalProperties": False,
}


@routes.post("/api/v1/me/credentials/{credential_id}/authorize")
@described(
    body={
        "type": "object",
        "properties": {
            "hashes": _HASHES,
            "hash_algorithm": _HASH_ALGORITHM,
            "password_key": TRANSPORT_MESSAGE_SCHEMA,
            "otp": {"type": "string", "pattern": "^[0-9]{6}$"},
            "device": {"type": "object", "description": "a bound device's assertion"},
            "face_challenge_id": {"type": "string", "maxLength": 64},
            "description": {"type": "string", "maxLength": 200},
        },
        "required": ["hashes", "password_key", "face_challenge_id"],
        "additionalProperties": False,
    }
)
async def authorize(request: web.Request) -> web.Response:
    owner = await current_owner(request)
    credential_id = path_id(request, "credential_id")
    body = await read_json(request)
    req = AuthorizeRequest(
        credential_id=credential_id,
        hashes=hashes_field(body, "hashes", request.app[SETTINGS].max_signatures_per_sad),
        hash_alg=hash_field(body),
        num_signatures=None,
        password_key=parse_transport_message(body.obj("password_key")),
        otp=possession_from(body),
        face_challenge_id=body.optional_text("face_challenge_id", max_len=MAX_FACE_CHECK_ID),
        description=body.optional_text("description", max_len=MAX_DESCRIPTION_CHARS),
    )
    sad, auth = await request.app[SIGNING].authorize(owner.id, req)
    expires_in = int((auth.expires_at - auth.created_at).total_seconds())
    return web.json_response(
        {"SAD": sad, "expires_in": expires_in, "factors": list(auth.factors)},
        headers={"Cache-Control": "no-store"},
    )


@routes.post("/api/v1/me/credentials/{credential_id}/sign-hashes")
@described(
    body={
        "type": "object",
        "properties": {
            "SAD": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,128}$"},
            "hashes": _HASHES,
            "hash_algorithm": _HASH_ALGORITHM,
            "sign_algorithm": {"type": "string", "maxLength": 64},
        },
        "required": ["SAD", "hashes"],
        "additionalProperties": False,
    }
)
async def sign_hashes(request: web.Request) -> web.Response:
    owner = await current_owner(request)
    credential_id = path_id(request, "credential_id")
    settings = request.app[SETTINGS]
    body = await read_json(request, settings.max_upload_bytes)
    sigs = await request.app[SIGNING].sign_hashes(
        owner.id,
        credential_id,
        body.optional_text("SAD", max_len=MAX_SAD_CHARS),
        hashes_field(body, "hashes", settings.max_signatures_per_sad),
        hash_field(body),
        body.optional_text("sign_algorithm", max_len=64),
    )
    return web.json_response({"signatures": [base64.b64encode(s).decode() for s in sigs]})


@routes.post("/api/v1/me/credentials/{credential_id}/sign-document")
async def sign_document(request: web.Request) -> web.Response:
    """JSON: {SAD, format: cades|pades|xades, level: B|T|LT|LTA, name?,
    document? (base64), document_hash? (base64)}. Returns the .p7s (CAdES,
    levels B, T and LT, from the document or its hash), the signed PDF
    (PAdES, B to LTA) or the signed XML document (XAdES, levels B and T)."""
    owner = await current_owner(request)
    credential_id = path_id(request, "credential_id")
    settings = request.app[SETTINGS]
    body = await read_json(request, settings.max_upload_bytes)
    req = DocumentRequest(
        credential_id=credential_id,
        sad=body.optional_text("SAD", max_len=MAX_SAD_CHARS),
        signature_format=body.choice("format", FORMATS, default="cades"),
        level=body.choice("level", LEVELS, default="B"),
        document=body.optional_b64("document", max_bytes=settings.max_upload_bytes),
        document_hash=body.optional_b64("document_hash", max_bytes=MAX_HASH_BYTES),
        name=body.optional_text("name", max_len=MAX_DOCUMENT_NAME_CHARS),
    )
    signature_id, output = await request.app[SIGNING].sign_document(owner.id, req)
    return _download(signature_id, req.signature_format, req.name, output)


@routes.post("/api/v1/me/credentials/{credential_id}/sign-container")
@described(
    body={
        "type": "object",
        "properties": {
            "SAD": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,128}$"},
            "container": {"type": "string", "enum": ["asic-e"]},
            "level": {"type": "string", "enum": ["B", "T", "LT"]},
            "name": {"type": "string", "maxLength": MAX_DOCUMENT_NAME_CHARS},
            "documents": {
                "type": "array",
                "minItems": 1,
                "maxItems": asic.MAX_FILES,
                "items": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string", "maxLength": asic.MAX_NAME_CHARS},
                        "content": {"type": "string", "contentEncoding": "base64"},
                        "mime_type": {"type": "string", "maxLength": asic.MAX_MIME_CHARS},
                    },
                    "required": ["name", "content"],
                    "additionalProperties": False,
                },
            },
        },
        "required": ["SAD", "documents"],
        "additionalProperties": False,
    },
    response_type=asic.MIMETYPE,
)
async def sign_container(request: web.Request) -> web.Response:
    """One ASiC-E container (EN 319 162-1, CAdES) over several documents; the
    SAD covers the SHA-256 of each. Returns the .asice."""
    owner = await current_owner(request)
    credential_id = path_id(request, "credential_id")
    settings = request.app[SETTINGS]
    body = await read_json(request, settings.max_upload_bytes)
    body.only({"SAD", "container", "level", "name", "documents"})
    body.choice("container", CONTAINERS, default="asic-e")
    files = []
    for item in body.objects("documents", max_items=asic.MAX_FILES):
        item.only({"name", "content", "mime_type"})
        files.append(
            asic.ContainerFile(
                name=item.text("name", max_len=asic.MAX_NAME_CHARS),
                content=item.b64("content", max_bytes=settings.max_upload_bytes),
                mime_type=item.optional_text("mime_type", max_len=asic.MAX_MIME_CHARS),
            )
        )
    req = asic.ContainerRequest(
        credential_id=credential_id,
        sad=body.optional_text("SAD", max_len=MAX_SAD_CHARS),
        level=body.choice("level", LEVELS, default="B"),
        files=files,
        name=body.optional_text("name", max_len=MAX_DOCUMENT_NAME_CHARS),
    )
    signature_id, output = await asic.sign_container(request.app[SIGNING], owner.id, req)
    return _download(signature_id, asic.FORMAT, req.name, output)


@routes.post("/api/v1/me/credentials/{credential_id}/revoke")
async def revoke_certificate(request: web.Request) -> web.Response:
    """The owner revokes their certificate after the same three factors as
    signing: {password_key, otp, face_challenge_id, reason?}."""
    owner = await current_owner(request)
    credential_id = path_id(request, "credential_id")
    body = await read_json(request)
    reason = body.choice("reason", {r: r for r in REVOCATION_REASONS}, default="owner-request")
    cred = await request.app[CREDENTIALS].active(owner.id, credential_id)
    await request.app[SIGNING].verify_factors(
        cred,
        parse_transport_message(body.obj("password_key")),
        possession_from(body),
        body.optional_text("face_challenge_id", max_len=MAX_FACE_CHECK_ID),
    )
    revocation = await request.app[REVOCATION].revoke(
        cred.certificate_serial, reason, actor=f"owner:{owner.id}"
    )
    return web.json_response(revocation.to_json())


def _download(signature_id: str, fmt: str, name: str | None, output: bytes) -> web.Response:
    base = (name or signature_id).rsplit("/", 1)[-1]
    if fmt == "pades":
        filename, ctype = f"{base.removesuffix('.pdf')}-signed.pdf", "application/pdf"
    elif fmt == "cades":
        filename, ctype = f"{base}.p7s", "application/pkcs7-signature"
    elif fmt == "xades":
        filename, ctype = f"{base.removesuffix('.xml')}-signed.xml", "application/xml"
    elif fmt == asic.FORMAT:
        filename, ctype = f"{base.removesuffix('.asice')}.asice", asic.MIMETYPE
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
    `filename*` (RFC 6266 / RFC 8187): nothing of the name can break the header
    (no quote, no CR/LF or other control character in the fallback)."""
    printable = "".join(c for c in filename if c.isprintable())
    fallback = "".join(c if c.isascii() and c not in '"\\' else "_" for c in printable)
    return (
        f'attachment; filename="{fallback or "download"}"; '
        f"filename*=UTF-8''{quote(printable, safe='')}"
    )


# -- personal cabinet -----------------------------------------------------------


def _document_json(d: SignedDocument, *, with_name: bool) -> dict[str, Any]:
    item: dict[str, Any] = {
        "signature_id": d.id,
        "hash_algorithm": d.hash_algorithm,
        "document_hash": d.document_hash,
        "format": d.format,
        "signed_at": d.signed_at.isoformat(),
        "credential_id": d.credential_id,
        "certificate_serial": d.certificate_serial,
        "keep_until": d.keep_until.isoformat(),
    }
    if with_name:
        item["name"] = d.name
    else:
        item["owner_id"] = d.owner_id
    return item


@routes.get("/api/v1/me/documents")
async def my_documents(request: web.Request) -> web.Response:
    owner = await current_owner(request)
    documents = await request.app[CABINET].documents(owner.id)
    return web.json_response([_document_json(d, with_name=True) for d in documents])


@routes.get("/api/v1/me/documents/{signature_id}")
async def my_document(request: web.Request) -> web.Response:
    owner = await current_owner(request)
    signature_id = path_id(request, "signature_id")
    stored = await request.app[CABINET].document(owner.id, signature_id)
    return _download(signature_id, stored.format, stored.name, stored.signature)


#: Routes of the operator listener.
operator_routes = web.RouteTableDef()


@operator_routes.get("/operator/api/v1/audit/documents")
async def auditor_documents(request: web.Request) -> web.Response:
    """Read-only auditor view: every signed document, without document names."""
    await current_operator(request, Role.AUDITOR)
    owner_id = query_text(request, "owner_id", max_len=64)
    documents = await request.app[CABINET].documents(owner_id)
    return web.json_response([_document_json(d, with_name=False) for d in documents])
