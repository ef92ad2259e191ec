"""Cloud Signature Consortium API, v1 (`/csc/v1/...`: `hash`, `hashAlgo`,
`PIN`, `OTP`) and v2 (`/csc/v2/...`: `hashes`, `hashAlgorithmOID`,
`authData`), so existing signing clients (pyHanko's `CSCSigner`, for one)
work unchanged. Errors use CSC's `{"error", "error_description"}` body.

Service authentication is the service's Bearer access token. The factors of
`credentials/authorize`:
- `PIN`: never a password: `CSPW1.<transport key id>.<device point>.<wrap>`,
  the key password's K_pw wrapped for a one-time HSM key (see mobile_api);
- `OTP`: the TOTP code;
- the face: the id of a face check passed through the portal or the phone
  just before (`FACE` in v1, an `authData` entry `{"id": "FACE"}` in v2, or
  `clientData` = `face:<id>`). Completing the face out of band and then
  authorising is what a custom pyHanko authorisation manager does.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Any, Final

from aiohttp import web
from asn1crypto import x509

from cloudsign.api_enrolment import current_owner
from cloudsign.appkeys import CA, SETTINGS, SIGNING
from cloudsign.enrolment import parse_transport_pin
from cloudsign.errors import ValidationError
from cloudsign.http import read_json
from cloudsign.signing.cms import signature_mechanisms
from cloudsign.signing.service import AUTH_EXPRESSION
from hsm_bridge import HashAlgorithm, UnsupportedAlgorithmError, hash_algorithm

routes = web.RouteTableDef()
VERSIONS: Final = ("v1", "v2")
LANG: Final = "en-US"


def _b64s(data: dict[str, Any], name: str) -> list[bytes]:
    items = data.get(name)
    if not isinstance(items, list) or not items or not all(isinstance(i, str) for i in items):
        raise ValidationError(f"{name} must be a non-empty array of base64 strings", field=name)
    try:
        return [base64.b64decode(i, validate=True) for i in items]
    except (binascii.Error, ValueError) as e:
        raise ValidationError(f"{name} must be base64", field=name) from e


def _hash_alg(oid: object, name: str, *, required: bool = True) -> HashAlgorithm | None:
    if oid is None and not required:
        return None
    if not isinstance(oid, str):
        raise ValidationError(f"{name} is required", field=name)
    try:
        return hash_algorithm(oid)
    except UnsupportedAlgorithmError as e:
        raise ValidationError(e.message, field=name) from e


def _version(request: web.Request) -> str:
    version = request.match_info["version"]
    if version not in VERSIONS:
        raise web.HTTPNotFound()
    return version


@routes.route("*", "/csc/{version}/info")
async def info(request: web.Request) -> web.Response:
    version = _version(request)
    base = request.app[SETTINGS].effective_public_url
    body: dict[str, Any] = {
        "specs": "1.0.4.0" if version == "v1" else "2.0.0.2",
        "name": "cloudsign",
        "logo": f"{base}/static/logo.svg",
        "region": "KZ",
        "lang": LANG,
        "description": "Cloud signatures; every signature needs face, OTP and the key password",
        "authType": ["external"],
        "methods": [
            "credentials/list",
            "credentials/info",
            "credentials/authorize",
            "credentials/extendTransaction",
            "signatures/signHash",
        ]
        + (["signatures/signDoc"] if version == "v2" else []),
    }
    return web.json_response(body)


@routes.post("/csc/{version}/credentials/list")
async def credentials_list(request: web.Request) -> web.Response:
    _version(request)
    owner = await current_owner(request)
    await read_json(request)
    ids = await request.app[SIGNING].credential_ids(owner.id)
    return web.json_response({"credentialIDs": ids})


@routes.post("/csc/{version}/credentials/info")
async def credentials_info(request: web.Request) -> web.Response:
    version = _version(request)
    owner = await current_owner(request)
    data = await read_json(request)
    cred = await request.app[SIGNING].credential(owner.id, data.get("credentialID"))
    cert: x509.Certificate = cred.certificate
    which = data.get("certificates", "single")
    if which not in ("none", "single", "chain"):
        raise ValidationError("certificates must be none, single or chain", field="certificates")
    chain = [cert] + (request.app[CA].chain if which == "chain" else [])
    settings = request.app[SETTINGS]
    locked = cred.locked_until is not None
    body: dict[str, Any] = {
        "description": f"{cred.algorithm.value} key of {cert.subject.native.get('common_name')}",
        "key": {
            "status": "disabled" if locked or cred.certificate_status != "good" else "enabled",
            "algo": signature_mechanisms(cert),
            "len": cert.public_key.bit_size,
        },
        "cert": {
            "status": "valid" if cred.certificate_status == "good" else "revoked",
            "certificates": [base64.b64encode(c.dump()).decode() for c in chain]
            if which != "none"
            else [],
        },
        "authMode": "explicit",
        "SCAL": "2",
        "multisign": settings.max_signatures_per_sad,
        "lang": LANG,
    }
    if data.get("certInfo"):
        body["cert"].update(
            {
                "issuerDN": cert.issuer.human_friendly,
                "serialNumber": format(cert.serial_number, "x"),
                "subjectDN": cert.subject.human_friendly,
                "validFrom": cert.not_valid_before.strftime("%Y%m%d%H%M%SZ"),
                "validTo": cert.not_valid_after.strftime("%Y%m%d%H%M%SZ"),
            }
        )
    if version == "v1":
        body["PIN"] = {
            "presence": "true",
            "format": "A",
            "label": "Key password",
            "description": "K_pw wrapped on the device for a one-time HSM key (CSPW1)",
        }
        body["OTP"] = {
            "presence": "true",
            "type": "offline",
            "format": "N",
            "label": "One-time code",
            "description": "TOTP (RFC 6238) from the authenticator app",
            "ID": "totp",
            "provider": "cloudsign",
        }
    else:
        body["auth"] = {
            "mode": "explicit",
            "expression": AUTH_EXPRESSION,
            "objects": [
                {"type": "Password", "id": "PIN", "format": "A", "label": "Key password (CSPW1)"},
                {"type": "Password", "id": "OTP", "format": "N", "label": "One-time code"},
                {"type": "Password", "id": "FACE", "format": "A", "label": "Passed face check id"},
            ],
        }
    return web.json_response(body)


def _face_from_client_data(data: dict[str, Any]) -> str | None:
    client_data = data.get("clientData")
    if isinstance(client_data, str) and client_data.startswith("face:"):
        return client_data.removeprefix("face:")
    return None


@routes.post("/csc/{version}/credentials/authorize")
async def credentials_authorize(request: web.Request) -> web.Response:
    version = _version(request)
    owner = await current_owner(request)
    data = await read_json(request)
    if version == "v1":
        hashes = _b64s(data, "hash")
        hash_alg = None
        pin, otp = data.get("PIN"), data.get("OTP")
        face = data.get("FACE") or _face_from_client_data(data)
    else:
        hashes = _b64s(data, "hashes")
        hash_alg = _hash_alg(data.get("hashAlgorithmOID"), "hashAlgorithmOID")
        auth_data = data.get("authData", [])
        if not isinstance(auth_data, list):
            raise ValidationError("authData must be an array", field="authData")
        values = {str(o.get("id")): o.get("value") for o in auth_data if isinstance(o, dict)}
        pin, otp = values.get("PIN"), values.get("OTP")
        face = values.get("FACE") or _face_from_client_data(data)
    num = data.get("numSignatures")
    if not isinstance(num, int) or isinstance(num, bool) or num < 1:
        raise ValidationError("numSignatures must be a positive integer", field="numSignatures")
    description = data.get("description")
    sad, auth = await request.app[SIGNING].authorize(
        owner.id,
        data.get("credentialID"),
        hashes=hashes,
        hash_alg=hash_alg,
        num_signatures=num,
        password_key=parse_transport_pin(pin),
        otp=otp,
        face_challenge_id=face,
        description=description if isinstance(description, str) else None,
    )
    return web.json_response(
        {"SAD": sad, "expiresIn": int((auth.expires_at - auth.created_at).total_seconds())}
    )


@routes.post("/csc/{version}/credentials/extendTransaction")
async def extend_transaction(request: web.Request) -> web.Response:
    _version(request)
    owner = await current_owner(request)
    data = await read_json(request)
    sad, auth = request.app[SIGNING].extend(owner.id, data.get("credentialID"), data.get("SAD"))
    return web.json_response(
        {
            "SAD": sad,
            "expiresIn": max(0, int((auth.expires_at - datetime.now(UTC)).total_seconds())),
        }
    )


@routes.post("/csc/{version}/signatures/signHash")
async def sign_hash(request: web.Request) -> web.Response:
    version = _version(request)
    owner = await current_owner(request)
    data = await read_json(request, request.app[SETTINGS].max_upload_bytes)
    if version == "v1":
        hashes = _b64s(data, "hash")
        hash_alg = _hash_alg(data.get("hashAlgo"), "hashAlgo", required=False)
    else:
        hashes = _b64s(data, "hashes")
        hash_alg = _hash_alg(data.get("hashAlgorithmOID"), "hashAlgorithmOID", required=False)
    sign_algo = data.get("signAlgo")
    if not isinstance(sign_algo, str):
        raise ValidationError("signAlgo is required", field="signAlgo")
    if hash_alg is None:
        # CSC lets the hash follow from signAlgo (e.g. ecdsa-with-SHA256).
        implied = {
            "1.2.840.10045.4.3.2": "sha256",
            "1.2.840.10045.4.3.3": "sha384",
            "1.2.840.10045.4.3.4": "sha512",
            "1.2.840.113549.1.1.11": "sha256",
            "1.2.840.113549.1.1.12": "sha384",
            "1.2.840.113549.1.1.13": "sha512",
        }
        if sign_algo not in implied:
            raise ValidationError("hashAlgo is required for this signAlgo", field="hashAlgo")
        hash_alg = hash_algorithm(implied[sign_algo])
    params = data.get("signAlgoParams")
    params_der = _b64s({"p": [params]}, "p")[0] if isinstance(params, str) and params else None
    sigs = await request.app[SIGNING].sign_hashes(
        owner.id, data.get("credentialID"), data.get("SAD"), hashes, hash_alg, sign_algo, params_der
    )
    return web.json_response({"signatures": [base64.b64encode(s).decode() for s in sigs]})


@routes.post("/csc/{version}/signatures/signDoc")
async def sign_doc(request: web.Request) -> web.Response:
    """v2 signDoc for whole documents: `documents: [{document, signature_format:
    "C" (CAdES, detached) | "P" (PAdES)}]`; the SAD must cover each
    document's SHA-256."""
    version = _version(request)
    if version != "v2":
        raise web.HTTPNotFound()
    owner = await current_owner(request)
    data = await read_json(request, request.app[SETTINGS].max_upload_bytes)
    docs = data.get("documents")
    if not isinstance(docs, list) or not docs or not all(isinstance(d, dict) for d in docs):
        raise ValidationError("documents must be a non-empty array", field="documents")
    out = []
    for d in docs:
        fmt = {"C": "cades", "P": "pades"}.get(str(d.get("signature_format")))
        if fmt is None:
            raise ValidationError("signature_format must be C or P", field="signature_format")
        level = {"AdES-B-B": "B", "AdES-B-T": "T", "AdES-B-LT": "LT", "AdES-B": "B"}.get(
            str(d.get("conformance_level", "AdES-B-B"))
        )
        if level is None:
            raise ValidationError(
                "conformance_level must be AdES-B-B, AdES-B-T or AdES-B-LT",
                field="conformance_level",
            )
        (document,) = _b64s({"document": [d.get("document")]}, "document")
        _id, signed = await request.app[SIGNING].sign_document(
            owner.id,
            data.get("credentialID"),
            data.get("SAD"),
            document=document,
            document_hash=None,
            signature_format=fmt,
            name=None,
            level=level,
        )
        out.append(base64.b64encode(signed).decode())
    return web.json_response({"DocumentWithSignature": out})
