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

Approval on the phone (v2): a `credentials/authorize` that carries no
factor at all, for an owner with a bound phone, answers **202 Accepted**
with `authorizationID` (the signing request the phone sees),
`verificationCode` (to show beside the phone's) and `expiresIn`. The
citizen approves on the phone with face, key password and the device; then
`credentials/authorizeCheck` with the `credentialID` and `authorizationID`
answers 200 with the `SAD` (once) and its `expiresIn`; 202 while the
citizen has not decided; 400 `access_denied` once declined or failed, and
`expired_token` once the request expired. SHA-256 hashes only.

OAuth 2.0 (v2 `oauth2code`, credential scope; mobile_api.oauth): the
access token from `{oauth2}/oauth2/token` carries the SAD; `signHash` and
`signDoc` take it as their Bearer, with no SAD in the body, and sign for
the SAD's owner exactly what the phone approved.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any, Final

from aiohttp import web
from asn1crypto import x509

from cloudsign.accounts import current_owner
from cloudsign.appkeys import CA, CREDENTIALS, SETTINGS, SIGNING, SIGNING_REQUESTS
from cloudsign.credentials import parse_transport_pin
from cloudsign.errors import NotFoundError, UnauthorizedError, ValidationError
from cloudsign.signing.algorithms import implied_hash, signature_mechanisms
from cloudsign.signing.api import MAX_DESCRIPTION_CHARS, MAX_HASH_BYTES, MAX_SAD_CHARS
from cloudsign.signing.sad import SAD_TOKEN_PREFIX, SadError
from cloudsign.signing.service import AUTH_EXPRESSION, AuthorizeRequest, DocumentRequest
from cloudsign.web.auth import bearer_token
from cloudsign.web.body import read_json
from cloudsign.web.inputs import Fields, check_digits, check_text
from cloudsign.web.problems import csc_error
from hsm_bridge import HashAlgorithm, UnsupportedAlgorithmError, hash_algorithm

routes = web.RouteTableDef()
VERSIONS: Final = ("v1", "v2")
LANG: Final = "en-US"
MAX_CREDENTIAL_ID: Final = 64
MAX_PIN_CHARS: Final = 512
#: Documents in one signDoc call.
MAX_DOCUMENTS: Final = 32
SIGNATURE_FORMATS: Final = {"C": "cades", "P": "pades", "X": "xades"}
CONFORMANCE_LEVELS: Final = {
    "AdES-B-B": "B",
    "AdES-B-T": "T",
    "AdES-B-LT": "LT",
    "AdES-B-LTA": "LTA",
    "AdES-B": "B",
}


def _hashes(body: Fields, name: str, max_items: int) -> list[bytes]:
    return body.b64_list(name, max_items=max_items, max_bytes=MAX_HASH_BYTES)


def _hash_alg(body: Fields, name: str, *, required: bool = True) -> HashAlgorithm | None:
    if name not in body and not required:
        return None
    oid = body.text(name, max_len=64)
    try:
        return hash_algorithm(oid)
    except UnsupportedAlgorithmError as e:
        raise ValidationError(e.message, field=name) from e


def _credential_id(body: Fields) -> str | None:
    return body.optional_text("credentialID", max_len=MAX_CREDENTIAL_ID)


def _otp(value: object) -> str | None:
    return None if value is None else check_digits(value, "OTP", min_len=6, max_len=8)


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
        "authType": ["external"] + (["oauth2code"] if version == "v2" else []),
        "methods": [
            "credentials/list",
            "credentials/info",
            "credentials/authorize",
        ]
        + (["credentials/authorizeCheck"] if version == "v2" else [])
        + [
            "credentials/extendTransaction",
            "signatures/signHash",
        ]
        + (["signatures/signDoc"] if version == "v2" else []),
    }
    if version == "v2":
        # oauth2code, credential scope (mobile_api.oauth): {oauth2}/oauth2/authorize, .../token.
        body["oauth2"] = f"{base}/csc/v2"
        body["oauth2Issuer"] = f"{base}/csc/v2"
    return web.json_response(body)


@routes.post("/csc/{version}/credentials/list")
async def credentials_list(request: web.Request) -> web.Response:
    _version(request)
    owner = await current_owner(request)
    await read_json(request)
    ids = await request.app[CREDENTIALS].active_ids(owner.id)
    return web.json_response({"credentialIDs": ids})


@routes.post("/csc/{version}/credentials/info")
async def credentials_info(request: web.Request) -> web.Response:
    version = _version(request)
    owner = await current_owner(request)
    query = await read_json(request)
    cred = await request.app[CREDENTIALS].active(owner.id, _credential_id(query))
    cert: x509.Certificate = cred.certificate
    which = query.choice(
        "certificates", {"none": "none", "single": "single", "chain": "chain"}, default="single"
    )
    chain = [cert] + (request.app[CA].chain if which == "chain" else [])
    settings = request.app[SETTINGS]
    locked = await request.app[SIGNING].factors.locked_until(cred.id) is not None
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
    if query.boolean("certInfo"):
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


def _face(value: object, body: Fields) -> str | None:
    """The passed face check's id: given directly, or as `clientData` = `face:<id>`."""
    if value is not None:
        return check_text(value, "FACE", max_len=64)
    client_data = body.optional_text("clientData", max_len=256)
    if client_data is not None and client_data.startswith("face:"):
        return client_data.removeprefix("face:")
    return None


@routes.post("/csc/{version}/credentials/authorize")
async def credentials_authorize(request: web.Request) -> web.Response:
    version = _version(request)
    owner = await current_owner(request)
    body = await read_json(request)
    limit = request.app[SETTINGS].max_signatures_per_sad
    if version == "v1":
        hashes = _hashes(body, "hash", limit)
        hash_alg = None
        pin, otp, face = body.raw("PIN"), body.raw("OTP"), body.raw("FACE")
    else:
        hashes = _hashes(body, "hashes", limit)
        hash_alg = _hash_alg(body, "hashAlgorithmOID")
        values: dict[str, object] = {}
        if "authData" in body:
            for item in body.objects("authData", max_items=8):
                values[item.text("id", max_len=16)] = item.raw("value")
        pin, otp, face = values.get("PIN"), values.get("OTP"), values.get("FACE")
    if pin is not None:
        pin = check_text(pin, "PIN", max_len=MAX_PIN_CHARS)
    face_id = _face(face, body)
    if version == "v2" and pin is None and otp is None and face_id is None:
        return await _authorize_on_phone(request, body, hashes, hash_alg, limit)
    req = AuthorizeRequest(
        credential_id=_credential_id(body) or "",
        hashes=hashes,
        hash_alg=hash_alg,
        num_signatures=body.integer("numSignatures", low=1, high=limit),
        password_key=parse_transport_pin(pin),
        otp=_otp(otp),
        face_challenge_id=face_id,
        description=body.optional_text("description", max_len=MAX_DESCRIPTION_CHARS),
    )
    sad, auth = await request.app[SIGNING].authorize(owner.id, req)
    return web.json_response(
        {"SAD": sad, "expiresIn": int((auth.expires_at - auth.created_at).total_seconds())}
    )


async def _authorize_on_phone(
    request: web.Request,
    body: Fields,
    hashes: list[bytes],
    hash_alg: HashAlgorithm | None,
    limit: int,
) -> web.Response:
    """No factor in the call: the owner's bound phone approves (202)."""
    owner = await current_owner(request)
    if hash_alg is None or hash_alg.name != "sha256":
        raise ValidationError(
            "approval on the phone takes SHA-256 hashes", field="hashAlgorithmOID"
        )
    if "numSignatures" in body and body.integer("numSignatures", low=1, high=limit) != len(hashes):
        raise ValidationError(
            "numSignatures must equal the number of hashes", field="numSignatures"
        )
    req = await request.app[SIGNING_REQUESTS].authorize_on_phone(
        owner,
        _credential_id(body),
        hashes,
        body.optional_text("description", max_len=MAX_DESCRIPTION_CHARS),
    )
    return web.json_response(
        {
            "authorizationID": req.id,
            "verificationCode": req.verification_code,
            "expiresIn": _seconds_left(request, req.expires_at),
        },
        status=202,
    )


def _seconds_left(request: web.Request, until: datetime) -> int:
    return max(0, int((until - request.app[SIGNING].clock()).total_seconds()))


@routes.post("/csc/{version}/credentials/authorizeCheck")
async def authorize_check(request: web.Request) -> web.Response:
    """The SAD of an authorisation the phone approved (see the module's text)."""
    if _version(request) != "v2":
        raise web.HTTPNotFound()
    owner = await current_owner(request)
    body = await read_json(request)
    authorization_id = body.text("authorizationID", max_len=64)
    req, issued = await request.app[SIGNING_REQUESTS].collect_authorization(
        owner.id, authorization_id
    )
    credential_id = _credential_id(body)
    if credential_id is not None and credential_id != req.credential_id:
        raise NotFoundError("no such authorisation")
    if req.status == "pending":
        return web.json_response(
            {"status": "pending", "expiresIn": _seconds_left(request, req.expires_at)},
            status=202,
        )
    if req.status == "expired":
        return csc_error(400, "expired_token", "the citizen did not approve in time")
    if req.status != "approved":
        return csc_error(400, "access_denied", f"the authorisation was {req.status}")
    if issued is None:
        return csc_error(400, "invalid_request", "the SAD was taken already, or has expired")
    sad, auth = issued
    return web.json_response({"SAD": sad, "expiresIn": _seconds_left(request, auth.expires_at)})


@routes.post("/csc/{version}/credentials/extendTransaction")
async def extend_transaction(request: web.Request) -> web.Response:
    _version(request)
    owner = await current_owner(request)
    body = await read_json(request)
    sad, auth = await request.app[SIGNING].extend(
        owner.id, _credential_id(body), body.optional_text("SAD", max_len=MAX_SAD_CHARS)
    )
    return web.json_response(
        {
            "SAD": sad,
            "expiresIn": max(
                0, int((auth.expires_at - request.app[SIGNING].clock()).total_seconds())
            ),
        }
    )


async def _signer(request: web.Request) -> tuple[str, str | None, str | None]:
    """Who signs: the owner of the citizen's access token, or, for a
    credential-scoped OAuth access token (mobile_api.oauth), the owner of
    the SAD it carries; with that token's SAD and credential."""
    if "Authorization" in request.headers:
        token = bearer_token(request)
        if token.startswith(SAD_TOKEN_PREFIX):
            sad = token.removeprefix(SAD_TOKEN_PREFIX)
            try:
                auth = await request.app[SIGNING].sads.holder(sad)
            except SadError as e:
                raise UnauthorizedError("access token unknown or expired") from e
            return auth.owner_id, sad, auth.credential_id
    owner = await current_owner(request)
    return owner.id, None, None


def _sad(body: Fields, token_sad: str | None) -> str | None:
    sad = body.optional_text("SAD", max_len=MAX_SAD_CHARS)
    if token_sad is not None and sad is not None and sad != token_sad:
        raise ValidationError("the SAD is the access token's: send it once", field="SAD")
    return token_sad or sad


@routes.post("/csc/{version}/signatures/signHash")
async def sign_hash(request: web.Request) -> web.Response:
    version = _version(request)
    owner_id, token_sad, token_credential = await _signer(request)
    settings = request.app[SETTINGS]
    body = await read_json(request, settings.max_upload_bytes)
    limit = settings.max_signatures_per_sad
    if version == "v1":
        hashes = _hashes(body, "hash", limit)
        hash_alg = _hash_alg(body, "hashAlgo", required=False)
    else:
        hashes = _hashes(body, "hashes", limit)
        hash_alg = _hash_alg(body, "hashAlgorithmOID", required=False)
    sign_algo = body.text("signAlgo", max_len=64)
    if hash_alg is None:
        # CSC lets the hash follow from signAlgo (e.g. ecdsa-with-SHA256).
        hash_alg = implied_hash(sign_algo)
        if hash_alg is None:
            raise ValidationError("hashAlgo is required for this signAlgo", field="hashAlgo")
    params_der = body.optional_b64("signAlgoParams", max_bytes=256)
    sigs = await request.app[SIGNING].sign_hashes(
        owner_id,
        _credential_id(body) or token_credential,
        _sad(body, token_sad),
        hashes,
        hash_alg,
        sign_algo,
        params_der or None,
    )
    return web.json_response({"signatures": [base64.b64encode(s).decode() for s in sigs]})


@routes.post("/csc/{version}/signatures/signDoc")
async def sign_doc(request: web.Request) -> web.Response:
    """v2 signDoc for whole documents: `documents: [{document, signature_format:
    "C" (CAdES, detached) | "P" (PAdES) | "X" (XAdES, enveloped)}]`; the SAD
    must cover each document's SHA-256."""
    version = _version(request)
    if version != "v2":
        raise web.HTTPNotFound()
    owner_id, token_sad, token_credential = await _signer(request)
    settings = request.app[SETTINGS]
    body = await read_json(request, settings.max_upload_bytes)
    credential_id = _credential_id(body) or token_credential
    sad = _sad(body, token_sad)
    out = []
    for d in body.objects("documents", max_items=MAX_DOCUMENTS):
        fmt = d.choice("signature_format", SIGNATURE_FORMATS)
        level = d.choice("conformance_level", CONFORMANCE_LEVELS, default="AdES-B-B")
        document = d.b64("document", max_bytes=settings.max_upload_bytes)
        _id, signed = await request.app[SIGNING].sign_document(
            owner_id,
            DocumentRequest(
                credential_id=credential_id or "",
                sad=sad,
                signature_format=fmt,
                level=level,
                document=document,
                document_hash=None,
                name=None,
            ),
        )
        out.append(base64.b64encode(signed).decode())
    return web.json_response({"DocumentWithSignature": out})
