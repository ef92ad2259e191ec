"""Relying parties: other organisations' services that start signing requests.

A security officer registers a relying party on the operator listener; the
service answers once with its `client_id`, a 256-bit `client_secret` (kept
only as its SHA-256) and a `callback_key` (never kept: it is an HMAC, inside
the HSM, of the client id, so it can be derived again but not read from the
database). The relying party authenticates each call with HTTP Basic
(`client_id:client_secret`, RFC 7617), sees only its own requests, and may
name a callback URL under the prefix registered for it.

Callbacks (`Callbacks.send`) are POSTs of `{"request_id", "status"}` with
the header `Cloudsign-Signature: t=<unix time>,v1=<hex HMAC-SHA256(callback
key, "<t>.<body>")>` (the webhook scheme Stripe made common): the relying
party checks the HMAC and the time before it trusts the notice, then fetches
the result with its own credentials. A callback is a hint; polling gives
the same answer.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import secrets
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final
from urllib.parse import urlsplit

import aiohttp
from sqlalchemy import insert, select, update
from sqlalchemy.engine import RowMapping

from cloudsign.clock import Clock
from cloudsign.errors import ConflictError, NotFoundError, UnauthorizedError, ValidationError
from cloudsign.events import EventType, append_event
from cloudsign.storage import Database
from hsm_bridge import KeyedHasher
from mobile_api.tables import relying_parties, signing_requests

log = logging.getLogger(__name__)

SECRET_BYTES: Final = 32
CALLBACK_TIMEOUT: Final = aiohttp.ClientTimeout(total=10)
SIGNATURE_HEADER: Final = "Cloudsign-Signature"


@dataclass(frozen=True)
class RelyingParty:
    id: str
    name: str
    client_id: str
    callback_prefix: str | None
    status: str
    created_at: datetime
    #: An e-government service's API No. 1/No. 2 URL prefix (mobile_api.egov).
    egov_prefix: str | None = None
    #: The exact redirect URIs of an OAuth 2.0 client (mobile_api.oauth).
    oauth_redirect_uris: tuple[str, ...] = ()


@dataclass(frozen=True)
class Registration:
    """What the officer hands to the relying party, once."""

    party: RelyingParty
    client_secret: str
    callback_key: str

    def __repr__(self) -> str:
        return f"Registration({self.party.client_id!r})"


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def check_callback_prefix(prefix: str) -> str:
    url = urlsplit(prefix)
    loopback = url.hostname in ("127.0.0.1", "localhost", "::1")
    if url.scheme != "https" and not (url.scheme == "http" and loopback):
        raise ValidationError(
            "callbacks go to https URLs (http only on loopback)", field="callback_prefix"
        )
    if not url.netloc or url.username or url.password or url.query or url.fragment:
        raise ValidationError("a plain URL prefix, without credentials", field="callback_prefix")
    return prefix


def check_egov_prefix(prefix: str) -> str:
    """An e-government service's URL prefix: https (http only on loopback,
    where a test's service runs), a host, a path ending in `/` (so a prefix
    never matches a longer host or a sibling path), nothing else."""
    url = urlsplit(prefix)
    loopback = url.hostname in ("127.0.0.1", "localhost", "::1")
    if url.scheme != "https" and not (url.scheme == "http" and loopback):
        raise ValidationError("egov_prefix must be an https URL", field="egov_prefix")
    if (
        not url.hostname
        or url.username
        or url.password
        or url.query
        or url.fragment
        or not url.path.endswith("/")
    ):
        raise ValidationError(
            "egov_prefix: scheme://host[:port]/path/ (ending in /), without credentials",
            field="egov_prefix",
        )
    return prefix


#: Redirect URIs one OAuth client may register.
MAX_REDIRECT_URIS: Final = 8


def check_redirect_uri(uri: str) -> str:
    """An OAuth redirect URI as RFC 6749 §3.1.2 and the OAuth security BCP
    (RFC 9700 §2.1) want it: absolute, https (http only on loopback), no
    fragment, no credentials; compared later by exact string match."""
    url = urlsplit(uri)
    loopback = url.hostname in ("127.0.0.1", "localhost", "::1")
    if url.scheme != "https" and not (url.scheme == "http" and loopback):
        raise ValidationError(
            "redirect URIs are https (http only on loopback)", field="oauth_redirect_uris"
        )
    if not url.hostname or url.username or url.password or url.fragment or "#" in uri:
        raise ValidationError(
            "a redirect URI is absolute, without credentials or fragment",
            field="oauth_redirect_uris",
        )
    return uri


def sign_callback(key: bytes, body: bytes, at: int) -> str:
    mac = hmac.new(key, str(at).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={at},v1={mac}"


class RelyingParties:
    def __init__(self, db: Database, hasher: KeyedHasher, *, clock: Clock) -> None:
        self.db = db
        self.hasher = hasher
        self.clock = clock

    async def register(
        self,
        name: str,
        callback_prefix: str | None,
        *,
        by_operator: str,
        by_name: str,
        egov_prefix: str | None = None,
        oauth_redirect_uris: Sequence[str] = (),
    ) -> Registration:
        if len(oauth_redirect_uris) > MAX_REDIRECT_URIS:
            raise ValidationError(
                f"at most {MAX_REDIRECT_URIS} redirect URIs", field="oauth_redirect_uris"
            )
        redirects = tuple(dict.fromkeys(check_redirect_uri(u) for u in oauth_redirect_uris))
        if callback_prefix is not None:
            check_callback_prefix(callback_prefix)
        if egov_prefix is not None:
            check_egov_prefix(egov_prefix)
            async with self.db.read() as conn:
                taken = (
                    await conn.execute(
                        select(relying_parties.c.id).where(
                            relying_parties.c.egov_prefix == egov_prefix
                        )
                    )
                ).first()
            if taken is not None:
                raise ConflictError("another relying party has this egov_prefix")
        party_id = str(uuid.uuid4())
        client_id = f"rp-{secrets.token_hex(8)}"
        secret = secrets.token_urlsafe(SECRET_BYTES)
        now = self.clock()
        async with self.db.transaction() as conn:
            await conn.execute(
                insert(relying_parties).values(
                    id=party_id,
                    name=name,
                    client_id=client_id,
                    secret_hash=_hash(secret),
                    callback_prefix=callback_prefix,
                    egov_prefix=egov_prefix,
                    oauth_redirect_uris=list(redirects) or None,
                    status="active",
                    created_at=now,
                    created_by=by_operator,
                )
            )
            await append_event(
                conn,
                EventType.OPERATOR_ACTION,
                owner_id=None,
                data={
                    "action": "relying-party.register",
                    "operator": by_name,
                    "relying_party": party_id,
                    "name": name,
                    "egov_prefix": egov_prefix,
                    "oauth_redirect_uris": list(redirects),
                },
                at=now,
            )
        party = RelyingParty(
            party_id, name, client_id, callback_prefix, "active", now, egov_prefix, redirects
        )
        key = await self.callback_key(client_id)
        return Registration(party, secret, base64.urlsafe_b64encode(key).decode())

    async def callback_key(self, client_id: str) -> bytes:
        return await self.hasher.hmac_sha256("rp-callback", client_id.encode())

    async def authenticate(self, authorization: str | None) -> RelyingParty:
        """HTTP Basic `client_id:client_secret`; one answer for every failure."""
        refused = UnauthorizedError("relying party credentials required (HTTP Basic)")
        if not authorization or not authorization.startswith("Basic "):
            raise refused
        try:
            decoded = base64.b64decode(authorization[6:], validate=True).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError) as e:
            raise refused from e
        client_id, sep, secret = decoded.partition(":")
        if not sep or len(client_id) > 64 or len(secret) > 128:
            raise refused
        async with self.db.read() as conn:
            row = (
                (
                    await conn.execute(
                        select(relying_parties).where(relying_parties.c.client_id == client_id)
                    )
                )
                .mappings()
                .first()
            )
        expected = row["secret_hash"] if row is not None else _hash("")
        if not hmac.compare_digest(expected, _hash(secret)) or row is None:
            raise refused
        if row["status"] != "active":
            raise refused
        return _party(row)

    async def oauth_client(self, client_id: str) -> RelyingParty | None:
        """The active relying party with this client id that registered
        OAuth redirect URIs (CSC oauth2code), or None."""
        async with self.db.read() as conn:
            row = (
                (
                    await conn.execute(
                        select(relying_parties).where(
                            relying_parties.c.client_id == client_id,
                            relying_parties.c.status == "active",
                        )
                    )
                )
                .mappings()
                .first()
            )
        party = None if row is None else _party(row)
        return party if party is not None and party.oauth_redirect_uris else None

    async def egov_service(self, url: str) -> RelyingParty | None:
        """The active relying party whose registered eGov prefix `url` is
        under (None for any other URL: the caller refuses it)."""
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    select(relying_parties).where(
                        relying_parties.c.egov_prefix.is_not(None),
                        relying_parties.c.status == "active",
                    )
                )
            ).mappings()
            found = [_party(r) for r in rows]
        for party in found:
            assert party.egov_prefix is not None
            if url.startswith(party.egov_prefix):
                return party
        return None

    async def all(self) -> list[RelyingParty]:
        async with self.db.read() as conn:
            rows = (
                await conn.execute(select(relying_parties).order_by(relying_parties.c.created_at))
            ).mappings()
            return [_party(r) for r in rows]

    async def disable(self, party_id: str, *, by_name: str) -> None:
        now = self.clock()
        async with self.db.transaction() as conn:
            result = await conn.execute(
                update(relying_parties)
                .where(relying_parties.c.id == party_id)
                .values(status="disabled")
            )
            if result.rowcount != 1:
                raise NotFoundError("no such relying party")
            await append_event(
                conn,
                EventType.OPERATOR_ACTION,
                owner_id=None,
                data={
                    "action": "relying-party.disable",
                    "operator": by_name,
                    "relying_party": party_id,
                },
                at=now,
            )


def _party(r: RowMapping) -> RelyingParty:
    return RelyingParty(
        r["id"],
        r["name"],
        r["client_id"],
        r["callback_prefix"],
        r["status"],
        r["created_at"],
        r["egov_prefix"],
        tuple(r["oauth_redirect_uris"] or ()),
    )


class Callbacks:
    """Tell a relying party its request was decided (signed POST, once)."""

    def __init__(self, db: Database, parties: RelyingParties, http: aiohttp.ClientSession) -> None:
        self.db = db
        self.parties = parties
        self.http = http

    async def send(self, request_id: str) -> None:
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(
                        signing_requests.c.callback_url,
                        signing_requests.c.status,
                        relying_parties.c.client_id,
                    )
                    .select_from(
                        signing_requests.join(
                            relying_parties,
                            signing_requests.c.relying_party_id == relying_parties.c.id,
                        )
                    )
                    .where(signing_requests.c.id == request_id)
                )
            ).first()
        if row is None or row[0] is None:
            return
        url, status, client_id = row
        body = json.dumps({"request_id": request_id, "status": status}).encode()
        key = await self.parties.callback_key(client_id)
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign_callback(key, body, int(time.time())),
        }
        outcome = "failed"
        try:
            async with self.http.post(
                url, data=body, headers=headers, timeout=CALLBACK_TIMEOUT, allow_redirects=False
            ) as resp:
                outcome = "sent" if 200 <= resp.status < 300 else "failed"
        except (aiohttp.ClientError, TimeoutError) as e:
            log.info("callback for request %s failed: %s", request_id, type(e).__name__)
        async with self.db.transaction() as conn:
            await conn.execute(
                update(signing_requests)
                .where(signing_requests.c.id == request_id)
                .values(callback_status=outcome)
            )
