"""CSC v2 `oauth2code` for the `credential` scope: an OAuth 2.0
authorisation server (RFC 6749 authorisation code grant, PKCE S256 only,
RFC 7636) whose approval is the citizen's phone.

A registered relying party is the OAuth client: its `client_id`, its
`client_secret` (HTTP Basic or in the form) and the exact redirect URIs a
security officer registered for it (`oauth_redirect_uris`). The flow, with
`oauth2` = `<public URL>/csc/v2` in `/csc/v2/info`:

1. The client sends the citizen's browser to `GET /csc/v2/oauth2/authorize`
   with `response_type=code`, `client_id`, `redirect_uri`, `scope=credential`
   (or RFC 9396 `authorization_details` of type `credential`), PKCE
   `code_challenge` + `code_challenge_method=S256`, `state`, and what to
   authorise: `credentialID`, `numSignatures`, `hashes` (base64url SHA-256
   values, comma-separated) and `hashAlgorithmOID`, or the same in
   `authorization_details` (`credentialID`, `hashAlgorithmOID`,
   `documentDigests: [{hash, label}]`). A wrong client or redirect URI gets
   an error page, never a redirect (RFC 6749 §4.1.2.1); any other error is
   a redirect with `error` and `state`.
2. The service makes a signing request for exactly those hashes on the
   credential owner's bound phone (mobile_api.requests, origin `csc`, named
   after the client), and sends the browser to a waiting page that shows
   the verification code the phone shows and reloads itself. The browser
   holds the authorisation by an HttpOnly cookie (only its SHA-256 is kept),
   so the page's URL alone gives nothing.
3. The citizen approves on the phone: face, key password and the bound
   device's assertion over the request, in one counted attempt, as for any
   signature. The approval issues a SAD for exactly those hashes, sealed on
   the request. The waiting page then redirects to the client's
   `redirect_uri` with a one-time `code` (valid `CODE_TTL`) and `state`; a
   declined, failed or expired request redirects with
   `error=access_denied`.
4. `POST /csc/v2/oauth2/token` (`grant_type=authorization_code`, `code`,
   `redirect_uri`, `code_verifier`, client authentication) answers the
   credential-scoped access token: `SAD_TOKEN_PREFIX` + the SAD. A
   code works once, for its client, its redirect URI and its PKCE verifier.
5. The client calls `signatures/signHash` (or `signDoc`) with that token as
   its Bearer and no SAD: it signs exactly the authorised hashes, as the
   SAD would (cloudsign.signing.csc).

The `service` scope (a CSC session for `credentials/list` and `info`
without the citizen's own access token) is not offered here: the client
names the credential, and the service authentication of the CSC API stays
the citizen's access token (`authType` `external`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import html
import json
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final
from urllib.parse import urlencode

from aiohttp import web
from sqlalchemy import insert, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from cloudsign.clock import Clock
from cloudsign.credentials import CredentialService
from cloudsign.errors import CloudsignError, UnauthorizedError
from cloudsign.guard import Guard, Limits
from cloudsign.signing import SAD_TOKEN_PREFIX
from cloudsign.storage import Database
from cloudsign.web.client import client_address
from mobile_api.relying import RelyingParties, RelyingParty
from mobile_api.requests import SigningRequest, SigningRequests
from mobile_api.tables import csc_oauth_grants, signing_requests

SCOPE: Final = "credential"
SHA256_OID: Final = "2.16.840.1.101.3.4.2.1"
#: How long a code waits for the client's token request (RFC 6749 §4.1.2: short).
CODE_TTL: Final = timedelta(seconds=60)
COOKIE_PREFIX: Final = "csc_oauth_"
MAX_STATE: Final = 512
MAX_DESCRIPTION: Final = 500
MAX_LABEL: Final = 200
MAX_HASHES: Final = 32
#: The waiting page reloads itself this often (seconds).
REFRESH_SECONDS: Final = 2
PAGE_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_PKCE_CHARS: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


class OAuthError(Exception):
    """An error answered the OAuth way: `{"error", "error_description"}`,
    or, at the authorisation endpoint once the redirect URI is known, a
    redirect carrying them."""

    def __init__(self, error: str, description: str, *, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.detail = description
        self.http_status = status


class ClientError(OAuthError):
    """The client or its redirect URI is wrong: the browser is told so, and
    is not sent anywhere (RFC 6749 §4.1.2.1)."""


@dataclass(frozen=True)
class Authorisation:
    """What `/oauth2/authorize` asks for, checked."""

    party: RelyingParty
    redirect_uri: str
    state: str | None
    code_challenge: str
    credential_id: str
    hashes: tuple[bytes, ...]
    labels: tuple[str | None, ...]
    description: str | None


@dataclass(frozen=True)
class Progress:
    """The waiting page's view: still pending (the request, to show its
    code), or where the browser goes now."""

    request: SigningRequest | None
    location: str | None


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _b64_hash(value: str, field: str) -> bytes:
    text = value.strip()
    try:
        raw = base64.b64decode(
            text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4), validate=True
        )
    except (binascii.Error, ValueError) as e:
        raise OAuthError("invalid_request", f"{field}: not base64") from e
    if len(raw) != 32:
        raise OAuthError("invalid_request", f"{field}: a SHA-256 value is 32 bytes")
    return raw


def _pkce_value(value: str | None, field: str) -> str:
    if value is None or not 43 <= len(value) <= 128 or not set(value) <= _PKCE_CHARS:
        raise OAuthError("invalid_request", f"{field}: 43 to 128 unreserved characters (RFC 7636)")
    return value


def _with_query(uri: str, params: Mapping[str, str | None]) -> str:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return f"{uri}{'&' if '?' in uri else '?'}{query}"


def _one(query: Mapping[str, str], name: str) -> str | None:
    value = query.get(name)
    if value is not None and len(value) > 8192:
        raise OAuthError("invalid_request", f"{name} is too long")
    return value


class CscOAuth:
    def __init__(
        self,
        db: Database,
        parties: RelyingParties,
        requests: SigningRequests,
        credentials: CredentialService,
        guard: Guard,
        limits: Limits,
        *,
        clock: Clock,
    ) -> None:
        self.db = db
        self.parties = parties
        self.requests = requests
        self.credentials = credentials
        self.guard = guard
        self.limits = limits
        self.clock = clock

    def __repr__(self) -> str:
        return "CscOAuth()"

    # -- 1. the authorisation request -------------------------------------------------

    async def client(self, query: Mapping[str, str]) -> tuple[RelyingParty, str]:
        """The OAuth client and the redirect URI to answer on (exactly one
        it registered), or ClientError."""
        client_id = _one(query, "client_id")
        party = None if not client_id else await self.parties.oauth_client(client_id)
        if party is None:
            raise ClientError("invalid_client", "unknown client_id")
        redirect_uri = _one(query, "redirect_uri")
        if redirect_uri is None and len(party.oauth_redirect_uris) == 1:
            redirect_uri = party.oauth_redirect_uris[0]
        if redirect_uri is None or redirect_uri not in party.oauth_redirect_uris:
            raise ClientError("invalid_request", "redirect_uri is not one this client registered")
        return party, redirect_uri

    def parse(
        self, party: RelyingParty, redirect_uri: str, query: Mapping[str, str]
    ) -> Authorisation:
        if _one(query, "response_type") != "code":
            raise OAuthError("unsupported_response_type", "response_type must be code")
        if _one(query, "code_challenge_method") != "S256":
            raise OAuthError("invalid_request", "PKCE with code_challenge_method=S256 is required")
        challenge = _pkce_value(_one(query, "code_challenge"), "code_challenge")
        state = _one(query, "state")
        if state is not None and len(state) > MAX_STATE:
            raise OAuthError("invalid_request", f"state: at most {MAX_STATE} characters")
        details = _one(query, "authorization_details")
        scope = _one(query, "scope")
        if details is None and scope != SCOPE:
            raise OAuthError(
                "invalid_scope", "scope must be credential (the service scope is not offered)"
            )
        if details is not None:
            credential_id, hash_oid, hashes, labels = _details(details)
        else:
            credential_id = _one(query, "credentialID") or ""
            hash_oid = _one(query, "hashAlgorithmOID")
            listed = (_one(query, "hashes") or "").split(",")
            hashes = [_b64_hash(h, "hashes") for h in listed if h.strip()]
            labels = [None] * len(hashes)
            count = _one(query, "numSignatures")
            if count is not None and count != str(len(hashes)):
                raise OAuthError("invalid_request", "numSignatures must equal the number of hashes")
        if not credential_id or len(credential_id) > 64:
            raise OAuthError("invalid_request", "credentialID is required")
        if hash_oid != SHA256_OID:
            raise OAuthError("invalid_request", f"hashAlgorithmOID must be {SHA256_OID} (SHA-256)")
        if not 1 <= len(hashes) <= MAX_HASHES:
            raise OAuthError("invalid_request", f"1 to {MAX_HASHES} hashes")
        description = _one(query, "description")
        if description is not None:
            description = description.strip()[:MAX_DESCRIPTION] or None
        return Authorisation(
            party,
            redirect_uri,
            state,
            challenge,
            credential_id,
            tuple(hashes),
            tuple(labels),
            description,
        )

    async def begin(self, auth: Authorisation, address: str) -> tuple[str, str]:
        """The phone's request and the grant waiting on it; returns the
        grant's id and the browser's handle on it (its cookie)."""
        await self.guard.counted([(self.limits.anonymous_keys, address)], factor="oauth-authorize")
        owner_id = await self.credentials.owner_of(auth.credential_id)
        # One answer for an unknown credential and one without a phone.
        unknown = OAuthError("access_denied", "no such credential with a bound phone")
        if owner_id is None or not await self.requests.devices.has_devices(owner_id):
            raise unknown
        req = await self.requests.authorize_for_client(
            owner_id,
            auth.credential_id,
            auth.hashes,
            auth.description or f"{auth.party.name}: authorise {len(auth.hashes)} signature(s)",
            requester_name=auth.party.name,
            labels=auth.labels,
        )
        grant_id = str(uuid.uuid4())
        handle = secrets.token_urlsafe(32)
        async with self.db.transaction() as conn:
            await conn.execute(
                insert(csc_oauth_grants).values(
                    id=grant_id,
                    handle_hash=_digest(handle),
                    relying_party_id=auth.party.id,
                    redirect_uri=auth.redirect_uri,
                    state=auth.state,
                    code_challenge=auth.code_challenge,
                    scope=SCOPE,
                    request_id=req.id,
                    status="pending",
                    created_at=self.clock(),
                    expires_at=req.expires_at,
                )
            )
        return grant_id, handle

    # -- 2. the waiting page ----------------------------------------------------------

    async def progress(self, grant_id: str, handle: str | None) -> Progress:
        if not handle:
            raise UnauthorizedError("this authorisation belongs to another browser")
        async with self.db.read() as conn:
            row = await _grant(
                conn,
                (csc_oauth_grants.c.id == grant_id)
                & (csc_oauth_grants.c.handle_hash == _digest(handle)),
            )
        if row is None:
            raise UnauthorizedError("this authorisation belongs to another browser")
        if row["status"] != "pending":
            return Progress(None, None)  # delivered already: nothing more to give
        req = await self.requests.get(row["owner_id"], row["request_id"])
        if req.status in ("pending", "signing"):
            return Progress(req, None)
        if req.status == "approved":
            code = secrets.token_urlsafe(32)
            values: dict[str, Any] = {
                "status": "code",
                "code_hash": _digest(code),
                "code_expires_at": self.clock() + CODE_TTL,
            }
            params = {"code": code, "state": row["state"]}
        else:
            values = {"status": "refused"}
            params = {
                "error": "access_denied",
                "error_description": f"the request was {req.status} on the phone",
                "state": row["state"],
            }
        async with self.db.transaction() as conn:
            moved = await conn.execute(
                update(csc_oauth_grants)
                .where(csc_oauth_grants.c.id == grant_id, csc_oauth_grants.c.status == "pending")
                .values(**values)
            )
        if moved.rowcount != 1:
            return Progress(None, None)  # another tab of this browser took it
        return Progress(None, _with_query(row["redirect_uri"], params))

    # -- 3. the token request ---------------------------------------------------------

    async def token(self, form: Mapping[str, str], authorization: str | None) -> dict[str, Any]:
        party = await self._authenticate(form, authorization)
        if form.get("grant_type") != "authorization_code":
            raise OAuthError("unsupported_grant_type", "grant_type must be authorization_code")
        code = form.get("code") or ""
        verifier = _pkce_value(form.get("code_verifier"), "code_verifier")
        invalid = OAuthError("invalid_grant", "code unknown, used, expired or not for this client")
        if not code or len(code) > 128:
            raise invalid
        now = self.clock()
        async with self.db.transaction() as conn:
            row = await _grant(conn, csc_oauth_grants.c.code_hash == _digest(code))
            if row is None or row["status"] != "code":
                raise invalid
            # Used once, whatever follows: a wrong verifier or URI burns it too.
            taken = await conn.execute(
                update(csc_oauth_grants)
                .where(csc_oauth_grants.c.id == row["id"], csc_oauth_grants.c.status == "code")
                .values(status="used")
            )
            if taken.rowcount != 1:
                raise invalid  # another token request took it meanwhile
        challenge = (
            base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
            .rstrip(b"=")
            .decode()
        )
        if (
            row["code_expires_at"] is None
            or row["code_expires_at"] <= now
            or row["relying_party_id"] != party.id
            or form.get("redirect_uri", row["redirect_uri"]) != row["redirect_uri"]
            or not secrets.compare_digest(challenge, row["code_challenge"])
        ):
            raise invalid
        req, issued = await self.requests.collect_authorization(row["owner_id"], row["request_id"])
        if issued is None:
            raise invalid
        sad, auth = issued
        return {
            "access_token": SAD_TOKEN_PREFIX + sad,
            "token_type": "Bearer",
            "expires_in": max(0, int((auth.expires_at - self.clock()).total_seconds())),
            "scope": SCOPE,
            "credentialID": req.credential_id,
        }

    async def _authenticate(
        self, form: Mapping[str, str], authorization: str | None
    ) -> RelyingParty:
        """client_secret_basic, or client_secret_post (RFC 6749 §2.3.1)."""
        if authorization is None and form.get("client_id") and form.get("client_secret"):
            pair = f"{form['client_id']}:{form['client_secret']}".encode()
            authorization = "Basic " + base64.b64encode(pair).decode()
        try:
            party = await self.parties.authenticate(authorization)
        except UnauthorizedError as e:
            raise OAuthError("invalid_client", "client authentication failed", status=401) from e
        if not party.oauth_redirect_uris:
            raise OAuthError("unauthorized_client", "this client registered no redirect URI")
        if form.get("client_id") not in (None, party.client_id):
            raise OAuthError("invalid_client", "client authentication failed", status=401)
        return party


async def _grant(conn: AsyncConnection, condition: Any) -> RowMapping | None:
    """A grant with the owner of its signing request."""
    found = await conn.execute(
        select(csc_oauth_grants, signing_requests.c.owner_id)
        .join(signing_requests, signing_requests.c.id == csc_oauth_grants.c.request_id)
        .where(condition)
    )
    return found.mappings().first()


def _details(text: str) -> tuple[str, str | None, list[bytes], list[str | None]]:
    """RFC 9396 `authorization_details`, CSC v2's type `credential`."""
    try:
        parsed = json.loads(text)
    except ValueError as e:
        raise OAuthError("invalid_authorization_details", "not JSON") from e
    items = parsed if isinstance(parsed, list) else [parsed]
    if len(items) != 1 or not isinstance(items[0], dict) or items[0].get("type") != SCOPE:
        raise OAuthError(
            "invalid_authorization_details", "one authorization_details entry of type credential"
        )
    item = items[0]
    credential_id = item.get("credentialID")
    hash_oid = item.get("hashAlgorithmOID")
    digests = item.get("documentDigests")
    if (
        not isinstance(credential_id, str)
        or not isinstance(hash_oid, str)
        or not isinstance(digests, list)
        or len(digests) > MAX_HASHES
    ):
        raise OAuthError(
            "invalid_authorization_details",
            "credentialID, hashAlgorithmOID and documentDigests are required",
        )
    hashes: list[bytes] = []
    labels: list[str | None] = []
    for d in digests:
        if not isinstance(d, dict) or not isinstance(d.get("hash"), str):
            raise OAuthError("invalid_authorization_details", "documentDigests: {hash, label}")
        hashes.append(_b64_hash(d["hash"], "documentDigests.hash"))
        label = d.get("label")
        labels.append(label.strip()[:MAX_LABEL] or None if isinstance(label, str) else None)
    return credential_id, hash_oid, hashes, labels


# -- HTTP ---------------------------------------------------------------------------------

routes = web.RouteTableDef()

#: The service, set by the composition root.
CSC_OAUTH: Final = web.AppKey("csc_oauth", CscOAuth)

_TEXTS: Final = {
    "en": {
        "title": "Approve on your phone",
        "lead": "{party} asks to sign with your key. Open the cloudsign app on your phone "
        "and check that it shows this code:",
        "wait": "This page moves on by itself once you have decided on the phone.",
        "done": "This authorisation is finished. You can close this page.",
        "error": "The signing application sent a wrong request",
    },
    "ru": {
        "title": "Подтвердите на телефоне",
        "lead": "{party} просит подписать вашим ключом. Откройте приложение cloudsign на "
        "телефоне и проверьте, что оно показывает этот код:",
        "wait": "Страница продолжит сама, когда вы решите на телефоне.",
        "done": "Это разрешение завершено. Страницу можно закрыть.",
        "error": "Приложение подписи отправило неверный запрос",
    },
    "kk": {
        "title": "Телефонда растаңыз",
        "lead": "{party} сіздің кілтіңізбен қол қоюды сұрайды. Телефондағы cloudsign "
        "қосымшасын ашып, ол осы кодты көрсететінін тексеріңіз:",
        "wait": "Телефонда шешім қабылдағаннан кейін бет өзі жалғасады.",
        "done": "Бұл рұқсат аяқталды. Бетті жабуға болады.",
        "error": "Қол қою қосымшасы қате сұрау жіберді",
    },
}


def _lang(request: web.Request) -> str:
    for part in request.headers.get("Accept-Language", "").split(","):
        tag = part.split(";")[0].strip().lower()[:2]
        if tag in _TEXTS:
            return tag
    return "en"


def _page(
    request: web.Request, body: str, *, refresh: str | None = None, status: int = 200
) -> web.Response:
    lang = _lang(request)
    meta = "" if refresh is None else f'<meta http-equiv="refresh" content="{refresh}">'
    text = (
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'{meta}<title>cloudsign</title><link rel="stylesheet" href="/static/portal.css">'
        f"</head><body><main>{body}</main></body></html>"
    )
    return web.Response(
        text=text, content_type="text/html", charset="utf-8", status=status, headers=PAGE_HEADERS
    )


def _error_page(request: web.Request, e: OAuthError) -> web.Response:
    """For a browser a page; for anything else CSC's (and OAuth's) error form."""
    if "text/html" not in request.headers.get("Accept", ""):
        return _oauth_error(e)
    t = _TEXTS[_lang(request)]
    return _page(
        request,
        f"<h1>{html.escape(t['error'])}</h1><p><code>{html.escape(e.error)}</code>: "
        f"{html.escape(e.detail)}</p>",
        status=e.http_status,
    )


@routes.get("/csc/v2/oauth2/authorize")
async def authorize(request: web.Request) -> web.StreamResponse:
    """CSC v2 oauth2code authorisation endpoint (see mobile_api.oauth)."""
    service = request.app[CSC_OAUTH]
    query = request.query
    try:
        party, redirect_uri = await service.client(query)
    except OAuthError as e:
        return _error_page(request, e)
    state = query.get("state")
    try:
        grant_id, handle = await service.begin(
            service.parse(party, redirect_uri, query), client_address()
        )
    except OAuthError as e:
        raise web.HTTPFound(
            _with_query(
                redirect_uri,
                {"error": e.error, "error_description": e.detail, "state": state},
            )
        ) from None
    except CloudsignError as e:
        # A limit or a conflict of the phone's request (too many for the phone).
        raise web.HTTPFound(
            _with_query(
                redirect_uri,
                {
                    "error": "temporarily_unavailable" if e.status == 429 else "access_denied",
                    "error_description": e.detail,
                    "state": state,
                },
            )
        ) from None
    response = web.HTTPSeeOther(f"/csc/v2/oauth2/wait?id={grant_id}")
    response.set_cookie(
        COOKIE_PREFIX + grant_id,
        handle,
        path="/csc/v2/oauth2",
        httponly=True,
        samesite="Lax",
        secure=request.secure,
        max_age=int(service.requests.settings.request_ttl.total_seconds()),
    )
    raise response


@routes.get("/csc/v2/oauth2/wait")
async def wait(request: web.Request) -> web.StreamResponse:
    """The page the browser waits on; on the phone's decision, the redirect."""
    service = request.app[CSC_OAUTH]
    grant_id = request.query.get("id", "")
    try:
        uuid.UUID(grant_id)
    except ValueError:
        raise web.HTTPNotFound() from None
    t = _TEXTS[_lang(request)]
    progress = await service.progress(grant_id, request.cookies.get(COOKIE_PREFIX + grant_id))
    if progress.location is not None:
        response = web.HTTPSeeOther(progress.location)
        response.del_cookie(COOKIE_PREFIX + grant_id, path="/csc/v2/oauth2")
        raise response
    req = progress.request
    if req is None:
        return _page(request, f"<h1>cloudsign</h1><p>{html.escape(t['done'])}</p>")
    lead = html.escape(t["lead"]).replace("{party}", f"<b>{html.escape(req.requester_name)}</b>")
    code = html.escape(req.verification_code)
    return _page(
        request,
        f"<h1>{html.escape(t['title'])}</h1><p>{lead}</p>"
        f'<p class="verification-code" id="verification-code">{code}</p>'
        f"<p>{html.escape(t['wait'])}</p>",
        refresh=str(REFRESH_SECONDS),
    )


@routes.post("/csc/v2/oauth2/token")
async def token(request: web.Request) -> web.Response:
    """CSC v2 oauth2code token endpoint (RFC 6749 §4.1.3)."""
    if request.content_type != "application/x-www-form-urlencoded":
        return _oauth_error(
            OAuthError("invalid_request", "send an application/x-www-form-urlencoded form")
        )
    if (request.content_length or 0) > 16384:
        return _oauth_error(OAuthError("invalid_request", "the form is too large"))
    form = await request.post()
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    try:
        body = await request.app[CSC_OAUTH].token(fields, request.headers.get("Authorization"))
    except OAuthError as e:
        return _oauth_error(e)
    return web.json_response(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


def _oauth_error(e: OAuthError) -> web.Response:
    headers = {"Cache-Control": "no-store"}
    if e.http_status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="cloudsign"'
    return web.json_response(
        {"error": e.error, "error_description": e.detail}, status=e.http_status, headers=headers
    )
