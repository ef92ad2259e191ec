"""The mobile channel over HTTP.

Devices (the owner's session):
    POST   /api/v1/me/devices/registration   WebAuthn creation options
    POST   /api/v1/me/devices                bind {challenge_id, credential, name, factors}
    GET    /api/v1/me/devices                list
    DELETE /api/v1/me/devices/{device_id}    revoke {face_challenge_id, password_key}
    POST   /api/v1/me/devices/challenge      assertion options {purpose}
    PUT    /api/v1/me/devices/{device_id}/push   the app's Web Push subscription
    GET    /api/v1/push/key                  the VAPID public key

Signing requests, the requesting screen (the portal session):
    POST   /api/v1/signing-requests          create
    GET    /api/v1/signing-requests/{id}     status, code, and the signatures
    GET    /api/v1/signing-requests/{id}/qr  the QR frame to show now
    DELETE /api/v1/signing-requests/{id}     withdraw it (while nobody decided)

Signing requests, a relying party (HTTP Basic client_id:client_secret):
    POST   /api/v1/rp/signing-requests       create {iin?, display_text, documents, callback_url?}
    GET    /api/v1/rp/signing-requests/{id}  status and the signatures
    GET    /api/v1/rp/signing-requests/{id}/qr  the QR frame for its page to show
    DELETE /api/v1/rp/signing-requests/{id}  withdraw it (while nobody decided)

Relying parties, a security officer (operator listener):
    POST/GET /operator/api/v1/relying-parties, DELETE .../{id}

Signing requests, the phone (the app's session):
    POST   /api/v1/device/qr                 claim the request a scanned frame names
    GET    /api/v1/device/requests           inbox (pending requests)
    GET    /api/v1/device/requests/{id}      what is to be signed
    GET    /api/v1/device/requests/{id}/documents/{n}   a document's bytes
    POST   /api/v1/device/requests/{id}/challenge       the approval challenge
    POST   /api/v1/device/requests/{id}/approval        approve with every factor
    POST   /api/v1/device/requests/{id}/decline
    POST   /api/v1/device/egov-qr            an eGov QR / mobileSign: link {link} (docs/egov-qr.md)
"""

from __future__ import annotations

import base64
from typing import Any, Final

from aiohttp import web

from cloudsign.accounts import (
    B64URL,
    current_owner,
    device_proof,
    possession_from,
    webauthn_credential,
)
from cloudsign.appkeys import (
    DEVICE_BINDING,
    DEVICES,
    EGOV_QR,
    PUSH,
    RELYING_PARTIES,
    SETTINGS,
    SIGNING_REQUESTS,
)
from cloudsign.ca import validate_iin
from cloudsign.credentials import parse_transport_message
from cloudsign.errors import ValidationError
from cloudsign.operators import Role, current_operator
from cloudsign.proofing import DOCUMENT_TYPES
from cloudsign.web.body import read_json
from cloudsign.web.inputs import Fields
from cloudsign.web.params import check_uuid, path_id
from mobile_api.devices import PURPOSES, Device, b64url
from mobile_api.relying import MAX_REDIRECT_URIS, RelyingParty
from mobile_api.requests import LEVELS, NewDocument, SigningRequest

routes = web.RouteTableDef()

NO_STORE: Final = {"Cache-Control": "no-store"}
MAX_NAME: Final = 64
MAX_DISPLAY_TEXT: Final = 1000
MAX_DOCUMENT_NAME: Final = 200
QR_REFRESH_MS: Final = 1000
#: Purposes a client may ask an assertion challenge for (approvals have their own).
CLIENT_PURPOSES: Final = {p: p for p in sorted(PURPOSES - {"bind"})}
ALL_LEVELS: Final = {level: level for levels in LEVELS.values() for level in levels}


def _password_key(body: Fields) -> Any:
    return parse_transport_message(body.obj("password_key")) if "password_key" in body else None


def device_json(device: Device) -> dict[str, Any]:
    return {
        "device_id": device.id,
        "name": device.name,
        "created_at": device.created_at.isoformat(),
        "last_used_at": device.last_used_at.isoformat() if device.last_used_at else None,
        "revoked_at": device.revoked_at.isoformat() if device.revoked_at else None,
        "status": "revoked" if device.revoked_at else "active",
    }


def request_json(req: SigningRequest, *, signatures: bool) -> dict[str, Any]:
    documents = []
    for d in req.documents:
        doc: dict[str, Any] = {
            "position": d.position,
            "name": d.name,
            "format": d.format,
            "hash": base64.b64encode(d.document_hash).decode(),
            "size": d.size,
        }
        if signatures and d.signature is not None:
            doc["signature"] = base64.b64encode(d.signature).decode()
            doc["signature_id"] = d.signature_id
        documents.append(doc)
    return {
        "request_id": req.id,
        "status": req.status,
        "requester": req.requester_name,
        "display_text": req.display_text,
        "credential_id": req.credential_id,
        "hash_algorithm": req.hash_algorithm,
        "level": req.level,
        "verification_code": req.verification_code,
        "created_at": req.created_at.isoformat(),
        "expires_at": req.expires_at.isoformat(),
        "decided_at": req.decided_at.isoformat() if req.decided_at else None,
        "error": req.error,
        "callback_status": req.callback_status,
        "documents": documents,
    }


# -- devices -----------------------------------------------------------------------


@routes.post("/api/v1/me/devices/registration")
async def registration_options(request: web.Request) -> web.Response:
    owner = await current_owner(request)
    issued = await request.app[DEVICE_BINDING].options(owner)
    return web.json_response(
        {"challenge_id": issued.id, "options": issued.options}, status=201, headers=NO_STORE
    )


@routes.post("/api/v1/me/devices")
async def bind_device(request: web.Request) -> web.Response:
    owner = await current_owner(request)
    body = await read_json(request)
    body.only(
        {
            "challenge_id",
            "credential",
            "name",
            "face_challenge_id",
            "password_key",
            "otp",
            "device",
        }
    )
    device = await request.app[DEVICE_BINDING].bind(
        owner,
        body.text("challenge_id", max_len=64),
        webauthn_credential(body.obj("credential"), registration=True),
        body.text("name", max_len=MAX_NAME),
        body.optional_text("face_challenge_id", max_len=64),
        _password_key(body),
        possession_from(body),
    )
    return web.json_response(device_json(device), status=201)


@routes.get("/api/v1/me/devices")
async def list_devices(request: web.Request) -> web.Response:
    owner = await current_owner(request)
    devices = await request.app[DEVICES].of_owner(owner.id)
    return web.json_response({"devices": [device_json(d) for d in devices]}, headers=NO_STORE)


@routes.delete("/api/v1/me/devices/{device_id}")
async def revoke_device(request: web.Request) -> web.Response:
    owner = await current_owner(request)
    device_id = path_id(request, "device_id")
    body = await read_json(request)
    body.only({"face_challenge_id", "password_key"})
    await request.app[DEVICE_BINDING].revoke(
        owner, device_id, body.optional_text("face_challenge_id", max_len=64), _password_key(body)
    )
    return web.json_response({"revoked": True})


@routes.get("/api/v1/push/key")
async def push_key(request: web.Request) -> web.Response:
    """The VAPID public key, for PushManager.subscribe's applicationServerKey."""
    return web.json_response({"public_key": await request.app[PUSH].public_key()})


@routes.put("/api/v1/me/devices/{device_id}/push")
async def push_subscribe(request: web.Request) -> web.Response:
    """`{endpoint, keys: {p256dh, auth}}`: PushSubscription.toJSON() of the app."""
    owner = await current_owner(request)
    owner.require_full()
    device_id = path_id(request, "device_id")
    body = await read_json(request)
    body.only({"endpoint", "keys", "expirationTime"})
    keys = body.obj("keys")
    keys.only({"p256dh", "auth"})
    await request.app[PUSH].subscribe(
        owner.id,
        device_id,
        body.text("endpoint", max_len=2000),
        keys.text("p256dh", max_len=200, pattern=B64URL),
        keys.text("auth", max_len=64, pattern=B64URL),
    )
    return web.json_response({"subscribed": True})


@routes.post("/api/v1/me/devices/challenge")
async def assertion_challenge(request: web.Request) -> web.Response:
    owner = await current_owner(request)
    body = await read_json(request)
    body.only({"purpose"})
    purpose = body.choice("purpose", CLIENT_PURPOSES)
    issued = await request.app[DEVICES].assertion_options(owner.id, purpose)
    return web.json_response(
        {
            "challenge_id": issued.id,
            "challenge": b64url(issued.challenge),
            "options": issued.options,
        },
        status=201,
        headers=NO_STORE,
    )


# -- signing requests: the requesting screen -------------------------------------


def _documents(body: Fields, max_items: int, max_bytes: int) -> list[NewDocument]:
    docs = []
    for item in body.objects("documents", max_items=max_items):
        item.only({"name", "format", "content", "hash"})
        docs.append(
            NewDocument(
                name=item.text("name", max_len=MAX_DOCUMENT_NAME),
                format=item.text("format", max_len=16),
                content=item.optional_b64("content", max_bytes=max_bytes),
                document_hash=item.optional_b64("hash", max_bytes=32, min_bytes=32),
            )
        )
    return docs


@routes.post("/api/v1/signing-requests")
async def create_request(request: web.Request) -> web.Response:
    owner = await current_owner(request)
    settings = request.app[SETTINGS]
    body = await read_json(request, limit=settings.max_upload_bytes)
    body.only({"credential_id", "display_text", "documents", "level"})
    created = await request.app[SIGNING_REQUESTS].create(
        owner,
        body.optional_text("credential_id", max_len=64),
        body.text("display_text", max_len=MAX_DISPLAY_TEXT, multiline=True),
        _documents(body, settings.max_request_documents, settings.max_upload_bytes),
        body.choice("level", ALL_LEVELS, default="B"),
    )
    return web.json_response(request_json(created, signatures=False), status=201)


@routes.get("/api/v1/signing-requests/{request_id}")
async def get_request(request: web.Request) -> web.Response:
    owner = await current_owner(request)
    req = await request.app[SIGNING_REQUESTS].get(owner.id, path_id(request, "request_id"))
    return web.json_response(request_json(req, signatures=True), headers=NO_STORE)


@routes.delete("/api/v1/signing-requests/{request_id}")
async def withdraw_request(request: web.Request) -> web.Response:
    """The requesting screen takes back a request nobody has decided yet."""
    owner = await current_owner(request)
    req = await request.app[SIGNING_REQUESTS].withdraw(owner, path_id(request, "request_id"))
    return web.json_response(request_json(req, signatures=False))


@routes.get("/api/v1/signing-requests/{request_id}/qr")
async def qr_frame(request: web.Request) -> web.Response:
    owner = await current_owner(request)
    frame = await request.app[SIGNING_REQUESTS].qr_frame(owner.id, path_id(request, "request_id"))
    return web.json_response({"qr": frame, "refresh_ms": QR_REFRESH_MS}, headers=NO_STORE)


# -- signing requests: the phone ---------------------------------------------------


@routes.post("/api/v1/device/qr")
async def claim(request: web.Request) -> web.Response:
    owner = await current_owner(request)
    body = await read_json(request)
    body.only({"qr"})
    req = await request.app[SIGNING_REQUESTS].claim(owner, body.text("qr", max_len=200))
    return web.json_response(request_json(req, signatures=False), headers=NO_STORE)


@routes.get("/api/v1/device/requests")
async def inbox(request: web.Request) -> web.Response:
    owner = await current_owner(request)
    pending = await request.app[SIGNING_REQUESTS].inbox(owner.id)
    return web.json_response(
        {"requests": [request_json(r, signatures=False) for r in pending]}, headers=NO_STORE
    )


@routes.get("/api/v1/device/requests/{request_id}")
async def device_request(request: web.Request) -> web.Response:
    owner = await current_owner(request)
    req = await request.app[SIGNING_REQUESTS].get(owner.id, path_id(request, "request_id"))
    return web.json_response(request_json(req, signatures=False), headers=NO_STORE)


@routes.get("/api/v1/device/requests/{request_id}/documents/{position}")
async def document_content(request: web.Request) -> web.Response:
    owner = await current_owner(request)
    raw = request.match_info["position"]
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 3):
        raise ValidationError("position must be a small number", field="position")
    content = await request.app[SIGNING_REQUESTS].content(
        owner.id, path_id(request, "request_id"), int(raw)
    )
    return web.Response(
        body=content,
        content_type="application/octet-stream",
        headers={**NO_STORE, "Content-Disposition": "attachment"},
    )


@routes.post("/api/v1/device/requests/{request_id}/challenge")
async def approval_challenge(request: web.Request) -> web.Response:
    owner = await current_owner(request)
    issued = await request.app[SIGNING_REQUESTS].approval_challenge(
        owner, path_id(request, "request_id")
    )
    return web.json_response(
        {
            "challenge_id": issued.challenge_id,
            "nonce": b64url(issued.nonce),
            "options": issued.options,
        },
        status=201,
        headers=NO_STORE,
    )


@routes.post("/api/v1/device/requests/{request_id}/approval")
async def approve(request: web.Request) -> web.Response:
    owner = await current_owner(request)
    request_id = path_id(request, "request_id")
    body = await read_json(request)
    body.only({"verification_code", "device", "face_challenge_id", "password_key"})
    req = await request.app[SIGNING_REQUESTS].approve(
        owner,
        request_id,
        body.digits("verification_code", min_len=4, max_len=4),
        device_proof(body.obj("device")),
        body.optional_text("face_challenge_id", max_len=64),
        _password_key(body),
    )
    return web.json_response(request_json(req, signatures=False))


@routes.post("/api/v1/device/requests/{request_id}/decline")
async def decline(request: web.Request) -> web.Response:
    owner = await current_owner(request)
    req = await request.app[SIGNING_REQUESTS].decline(owner, path_id(request, "request_id"))
    return web.json_response(request_json(req, signatures=False))


@routes.post("/api/v1/device/egov-qr")
async def egov_qr(request: web.Request) -> web.Response:
    """The phone scanned an e-government service's QR (or opened its
    `mobileSign:` link): the server fetches the procedure and answers with
    the signing request to approve like any other."""
    owner = await current_owner(request)
    body = await read_json(request)
    body.only({"link"})
    req = await request.app[EGOV_QR].scan(owner, body.text("link", max_len=2100))
    return web.json_response(request_json(req, signatures=False), status=201, headers=NO_STORE)


# -- relying parties ------------------------------------------------------------------


async def _party(request: web.Request) -> RelyingParty:
    return await request.app[RELYING_PARTIES].authenticate(request.headers.get("Authorization"))


@routes.post("/api/v1/rp/signing-requests")
async def party_create(request: web.Request) -> web.Response:
    party = await _party(request)
    settings = request.app[SETTINGS]
    body = await read_json(request, limit=settings.max_upload_bytes)
    body.only({"iin", "display_text", "documents", "level", "callback_url"})
    created = await request.app[SIGNING_REQUESTS].create_for(
        party,
        body.optional_digits("iin", min_len=12, max_len=12),
        body.text("display_text", max_len=MAX_DISPLAY_TEXT, multiline=True),
        _documents(body, settings.max_request_documents, settings.max_upload_bytes),
        body.choice("level", ALL_LEVELS, default="B"),
        body.optional_text("callback_url", max_len=400),
    )
    return web.json_response(request_json(created, signatures=False), status=201)


@routes.get("/api/v1/rp/signing-requests/{request_id}")
async def party_get(request: web.Request) -> web.Response:
    party = await _party(request)
    req = await request.app[SIGNING_REQUESTS].for_party(party.id, path_id(request, "request_id"))
    return web.json_response(request_json(req, signatures=True), headers=NO_STORE)


@routes.delete("/api/v1/rp/signing-requests/{request_id}")
async def party_withdraw(request: web.Request) -> web.Response:
    party = await _party(request)
    req = await request.app[SIGNING_REQUESTS].withdraw_for(party.id, path_id(request, "request_id"))
    return web.json_response(request_json(req, signatures=False))


@routes.get("/api/v1/rp/signing-requests/{request_id}/qr")
async def party_qr(request: web.Request) -> web.Response:
    party = await _party(request)
    frame = await request.app[SIGNING_REQUESTS].party_qr_frame(
        party.id, path_id(request, "request_id")
    )
    return web.json_response({"qr": frame, "refresh_ms": QR_REFRESH_MS}, headers=NO_STORE)


operator_routes = web.RouteTableDef()


def party_json(party: RelyingParty) -> dict[str, Any]:
    return {
        "relying_party_id": party.id,
        "name": party.name,
        "client_id": party.client_id,
        "callback_prefix": party.callback_prefix,
        "egov_prefix": party.egov_prefix,
        "oauth_redirect_uris": list(party.oauth_redirect_uris),
        "status": party.status,
        "created_at": party.created_at.isoformat(),
    }


@operator_routes.post("/operator/api/v1/relying-parties")
async def register_party(request: web.Request) -> web.Response:
    """A security officer registers another organisation's service; the
    secret and the callback key are in this answer only."""
    officer = await current_operator(request, Role.SECURITY)
    body = await read_json(request)
    body.only({"name", "callback_prefix", "egov_prefix", "oauth_redirect_uris"})
    registration = await request.app[RELYING_PARTIES].register(
        body.text("name", max_len=200),
        body.optional_text("callback_prefix", max_len=400),
        by_operator=officer.id,
        by_name=officer.username,
        egov_prefix=body.optional_text("egov_prefix", max_len=400),
        oauth_redirect_uris=body.texts(
            "oauth_redirect_uris", max_items=MAX_REDIRECT_URIS, max_len=400
        ),
    )
    return web.json_response(
        {
            **party_json(registration.party),
            "client_secret": registration.client_secret,
            "callback_key": registration.callback_key,
        },
        status=201,
        headers=NO_STORE,
    )


@operator_routes.post("/operator/api/v1/desk/device-revocations")
async def desk_revoke_devices(request: web.Request) -> web.Response:
    """`{iin, document: {type, number}, capture_id[, device_id]}`: a lost
    phone revoked at the registration desk. The officer's live capture of
    the citizen (`/desk/captures`) must be the account's enrolled face."""
    officer = await current_operator(request, Role.REGISTRATION)
    body = await read_json(request)
    body.only({"iin", "document", "capture_id", "device_id"})
    doc = body.obj("document")
    doc.only({"type", "number"})
    document = {
        "type": doc.choice("type", {t: t for t in DOCUMENT_TYPES}),
        "number": doc.text("number", max_len=32),
    }
    device_id = body.optional_text("device_id", max_len=36)
    revoked = await request.app[DEVICE_BINDING].revoke_at_desk(
        officer,
        validate_iin(body.digits("iin", min_len=12, max_len=12)),
        document,
        body.text("capture_id", max_len=36),
        None if device_id is None else check_uuid(device_id, "device_id"),
    )
    return web.json_response({"revoked": [device_json(d) for d in revoked]})


@operator_routes.get("/operator/api/v1/relying-parties")
async def list_parties(request: web.Request) -> web.Response:
    await current_operator(request, Role.SECURITY)
    parties = await request.app[RELYING_PARTIES].all()
    return web.json_response({"relying_parties": [party_json(p) for p in parties]})


@operator_routes.delete("/operator/api/v1/relying-parties/{party_id}")
async def disable_party(request: web.Request) -> web.Response:
    officer = await current_operator(request, Role.SECURITY)
    await request.app[RELYING_PARTIES].disable(
        path_id(request, "party_id"), by_name=officer.username
    )
    return web.json_response({"disabled": True})
