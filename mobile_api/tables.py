"""Tables of the mobile channel: bound devices, their one-time WebAuthn
challenges and push subscriptions, relying parties, signing requests with
their documents, the eGov QR procedures scanned into signing requests, and
the CSC OAuth 2.0 authorisations approved through signing requests."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Table,
    UniqueConstraint,
    false,
)

from cloudsign.storage.schema import metadata
from cloudsign.storage.types import UTCDateTime

#: A bound phone: a WebAuthn platform credential (user verification required).
devices = Table(
    "devices",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("owner_id", String(36), ForeignKey("owners.id"), nullable=False, index=True),
    Column("name", String(64), nullable=False),
    # The authenticator's credential id (raw bytes), unique across owners.
    Column("credential_id", LargeBinary, nullable=False, unique=True),
    Column("public_key", LargeBinary, nullable=False),  # COSE_Key
    Column("sign_count", BigInteger, nullable=False),
    Column("aaguid", String(36), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("last_used_at", UTCDateTime()),
    Column("revoked_at", UTCDateTime()),
    Column("revoked_by", String(16)),  # owner | desk | account
)

#: A challenge handed to one device flow, used at most once.
device_challenges = Table(
    "device_challenges",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("owner_id", String(36), ForeignKey("owners.id"), nullable=False, index=True),
    # bind | login | enrol | authorize | approve:<signing request id>
    Column("purpose", String(64), nullable=False),
    # SHA-256 of the challenge bytes the authenticator signs.
    Column("challenge_hash", String(64), nullable=False, unique=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("used_at", UTCDateTime()),
)

#: Another organisation's service that may start signing requests.
relying_parties = Table(
    "relying_parties",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("client_id", String(64), nullable=False, unique=True),
    # SHA-256 of the 256-bit client secret; the secret itself is shown once.
    Column("secret_hash", String(64), nullable=False),
    # Callbacks go only to URLs that start with this (https, or loopback http).
    Column("callback_prefix", String(400)),
    # An e-government service speaking the eGov QR protocol (mobile_api.egov):
    # its API No. 1 and No. 2 URLs start with this (https, or loopback in tests).
    Column("egov_prefix", String(400), unique=True),
    # An OAuth 2.0 client of CSC's `oauth2code` (mobile_api.oauth): the exact
    # redirect URIs it registered (JSON list; none: not an OAuth client).
    Column("oauth_redirect_uris", JSON),
    Column("status", String(16), nullable=False),  # active | disabled
    Column("created_at", UTCDateTime(), nullable=False),
    Column("created_by", String(36), ForeignKey("operators.id")),
    CheckConstraint("status IN ('active', 'disabled')", name="status"),
)

signing_requests = Table(
    "signing_requests",
    metadata,
    Column("id", String(36), primary_key=True),
    # Who asked: the portal (the citizen's own session, on another screen)
    # a relying party (another organisation's service), or a CSC client's
    # credentials/authorize (the approval gives a SAD, not signatures).
    Column("origin", String(16), nullable=False),
    Column("relying_party_id", String(36), ForeignKey("relying_parties.id"), index=True),
    Column("requester_name", String(200), nullable=False),
    # The citizen who must approve, and the key that will sign; a relying
    # party's request without an IIN gets them when a citizen scans its QR.
    Column("owner_id", String(36), ForeignKey("owners.id"), index=True),
    Column("credential_id", String(36)),
    # False for a relying party's request naming an IIN that has no account
    # with a bound phone: it can be neither scanned nor approved.
    Column("open_to_scan", Boolean, nullable=False, server_default=false()),
    Column("callback_url", String(400)),
    Column("callback_status", String(16)),  # sent | failed
    Column("display_text", String(1000), nullable=False),
    Column("hash_algorithm", String(16), nullable=False),
    # SHA-256 over the request id and every document hash (codes.commitment).
    Column("commitment", LargeBinary, nullable=False),
    Column("verification_code", String(4), nullable=False),
    Column("level", String(8), nullable=False),  # B | T | LT (CAdES, PAdES, XAdES)
    Column("status", String(16), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("decided_at", UTCDateTime()),
    Column("device_id", String(36), ForeignKey("devices.id")),
    Column("failed_approvals", Integer, nullable=False, server_default="0"),
    Column("error", String(200)),
    # A CSC phone approval's SAD, sealed under the HSM until the client's
    # authorizeCheck takes it (once); any process can hand it out.
    Column("sealed_sad", LargeBinary),
    CheckConstraint(
        "status IN ('pending', 'signing', 'approved', 'declined', 'expired', 'failed', "
        "'withdrawn')",
        name="status",
    ),
    CheckConstraint("origin IN ('portal', 'rp', 'csc')", name="origin"),
)

signing_request_documents = Table(
    "signing_request_documents",
    metadata,
    Column("request_id", String(36), ForeignKey("signing_requests.id"), nullable=False),
    Column("position", Integer, nullable=False),
    Column("name", String(200), nullable=False),
    Column("format", String(16), nullable=False),  # cades | pades | xades | raw
    Column("document_hash", LargeBinary, nullable=False),
    # The document itself (a PDF to sign in PAdES, an XML document to sign
    # in XAdES, or content to show);
    # None when only the hash was sent.
    Column("content", LargeBinary),
    Column("content_type", String(100)),
    # After approval: the signature (raw, CMS, the signed PDF or XML) and its
    # cabinet id.
    Column("signature", LargeBinary),
    Column("signature_id", String(36)),
    UniqueConstraint("request_id", "position", name="uq_signing_request_documents"),
    CheckConstraint("format IN ('cades', 'pades', 'xades', 'raw')", name="format"),
)

#: Web Push subscriptions of bound devices (the endpoint and the browser's keys).
push_subscriptions = Table(
    "push_subscriptions",
    metadata,
    Column("device_id", String(36), ForeignKey("devices.id"), primary_key=True),
    Column("endpoint", String(2000), nullable=False),
    Column("client_keys", JSON, nullable=False),  # p256dh, auth (base64url)
    Column("created_at", UTCDateTime(), nullable=False),
)

#: An eGov QR signing procedure a citizen's phone scanned (mobile_api.egov):
#: one row per link, so a link is used once.
egov_procedures = Table(
    "egov_procedures",
    metadata,
    Column("id", String(36), primary_key=True),
    # SHA-256 (hex) of the API No. 1 URL the link names.
    Column("link_hash", String(64), nullable=False, unique=True),
    Column("relying_party_id", String(36), ForeignKey("relying_parties.id"), nullable=False),
    Column("owner_id", String(36), ForeignKey("owners.id"), nullable=False, index=True),
    Column("request_id", String(36), ForeignKey("signing_requests.id"), unique=True),
    # API No. 2: where the documents are fetched from and the signatures go.
    Column("api2_uri", String(2000)),
    Column("auth_type", String(8)),  # None | Token
    # The Token (auth_type Token), AES-GCM under a key derived in the HSM:
    # nonce || ciphertext. Never stored in the clear.
    Column("auth_token", LargeBinary),
    Column("sign_method", String(24)),  # CMS_SIGN_ONLY | CMS_WITH_DATA
    # What the PUT repeats of API No. 2's answer: each document's id, names,
    # meta and mime (not its data), by position in the signing request.
    Column("documents", JSON),
    # fetching -> refused (the scan failed) | pending -> sending -> sent | failed
    # (the delivery), or declined | expired | failed (the request; nothing is sent)
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("error", String(200)),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime()),
)

#: A CSC `oauth2code` authorisation (mobile_api.oauth): the browser's
#: handle on it, then its one-time code, both kept only as SHA-256.
csc_oauth_grants = Table(
    "csc_oauth_grants",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("handle_hash", String(64), nullable=False, unique=True),
    Column("code_hash", String(64), unique=True),
    Column("relying_party_id", String(36), ForeignKey("relying_parties.id"), nullable=False),
    Column("redirect_uri", String(400), nullable=False),
    Column("state", String(512)),
    # PKCE (RFC 7636, S256 only): the client's code_challenge.
    Column("code_challenge", String(128), nullable=False),
    Column("scope", String(16), nullable=False),  # credential
    # The signing request the phone approves (origin csc): its SAD is the grant.
    Column(
        "request_id", String(36), ForeignKey("signing_requests.id"), nullable=False, unique=True
    ),
    # pending -> code (redirected with a code) -> used (token issued) | refused
    Column("status", String(16), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("code_expires_at", UTCDateTime()),
    CheckConstraint("status IN ('pending', 'code', 'used', 'refused')", name="status"),
)
