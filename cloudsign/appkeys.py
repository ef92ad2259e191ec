"""Typed application keys: the one place the app's shared resources are named.

The types are imported for the type checker only, so that every feature's
HTTP module can read its service from the app without this module importing
a single feature at run time (features import this; it imports none).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web

from cloudsign.clock import Clock
from cloudsign.settings import Settings

if TYPE_CHECKING:
    from biometrics import FaceWorkerPool
    from cloudsign.accounts import AccountService
    from cloudsign.audit import Anchorer, AuditLog
    from cloudsign.ca import CertificateAuthority
    from cloudsign.credentials import CredentialService, TransportKeys
    from cloudsign.faces import FaceService
    from cloudsign.guard import Guard, Limits
    from cloudsign.lifecycle import LifecycleService
    from cloudsign.operators import OperatorService
    from cloudsign.proofing import ProofingService
    from cloudsign.signing import Cabinet, SigningService
    from cloudsign.status import RevocationService, StatusOperations, StatusServices
    from cloudsign.storage import Database
    from cloudsign.storage.leader import Leadership
    from cloudsign.web.health import Probe
    from cloudsign.web.metrics import Metrics
    from hsm_bridge import HsmBridge
    from mobile_api import (
        DeviceBinding,
        DeviceService,
        EgovQr,
        PushService,
        RelyingParties,
        SigningRequests,
    )

# -- shared resources --------------------------------------------------------------
SETTINGS = web.AppKey("settings", Settings)
#: The clock every service runs on; tests set it before start-up.
CLOCK: web.AppKey[Clock] = web.AppKey("clock")
#: The clock TOTP codes are checked against (default: CLOCK). Tests give
#: TOTP a clock of its own that jumps to the next step instead of waiting.
TOTP_CLOCK: web.AppKey[Clock] = web.AppKey("totp_clock")
DATABASE: web.AppKey[Database] = web.AppKey("database")
HSM: web.AppKey[HsmBridge] = web.AppKey("hsm")
FACE_POOL: web.AppKey[FaceWorkerPool] = web.AppKey("face_pool")
#: The one outgoing HTTP session (pyHanko's TSA and OCSP/CRL fetches).
HTTP_CLIENT = web.AppKey("http_client", aiohttp.ClientSession)

# -- features -----------------------------------------------------------------------
GUARD: web.AppKey[Guard] = web.AppKey("guard")
LIMITS: web.AppKey[Limits] = web.AppKey("limits")
OPERATORS: web.AppKey[OperatorService] = web.AppKey("operators")
PROOFING: web.AppKey[ProofingService] = web.AppKey("proofing")
LIFECYCLE: web.AppKey[LifecycleService] = web.AppKey("lifecycle")
# The mobile channel (mobile_api): bound devices and signing requests.
DEVICES: web.AppKey[DeviceService] = web.AppKey("devices")
DEVICE_BINDING: web.AppKey[DeviceBinding] = web.AppKey("device_binding")
SIGNING_REQUESTS: web.AppKey[SigningRequests] = web.AppKey("signing_requests")
RELYING_PARTIES: web.AppKey[RelyingParties] = web.AppKey("relying_parties")
PUSH: web.AppKey[PushService] = web.AppKey("push")
#: eGov QR signing: links the phone scanned, fetched and answered server side.
EGOV_QR: web.AppKey[EgovQr] = web.AppKey("egov_qr")
#: The process's Prometheus instruments (cloudsign/web/metrics.py).
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
#: What `/readyz` checks, by name (cloudsign/web/health.py).
READINESS: web.AppKey[dict[str, Probe]] = web.AppKey("readiness")
#: Where the operator listener runs (the public app knows, for tests and logs).
OPERATOR_URL = web.AppKey("operator_url", str)
CA: web.AppKey[CertificateAuthority] = web.AppKey("ca")
ACCOUNTS: web.AppKey[AccountService] = web.AppKey("accounts")
TRANSPORT_KEYS: web.AppKey[TransportKeys] = web.AppKey("transport_keys")
CREDENTIALS: web.AppKey[CredentialService] = web.AppKey("credentials")
FACES: web.AppKey[FaceService] = web.AppKey("faces")
SIGNING: web.AppKey[SigningService] = web.AppKey("signing")
CABINET: web.AppKey[Cabinet] = web.AppKey("cabinet")
STATUS: web.AppKey[StatusServices] = web.AppKey("status")
#: The revocation service alone: `await app[REVOCATION].revoke(serial, reason, actor)`.
REVOCATION: web.AppKey[RevocationService] = web.AppKey("revocation")
STATUS_OPERATIONS: web.AppKey[StatusOperations] = web.AppKey("status_operations")
AUDIT_LOG: web.AppKey[AuditLog] = web.AppKey("audit_log")
ANCHORER: web.AppKey[Anchorer] = web.AppKey("audit_anchorer")

# -- background tasks (tests stop and restart them) -----------------------------------
#: Which process runs the once-only background work (cloudsign/storage/leader.py).
LEADERSHIP: web.AppKey[Leadership] = web.AppKey("leadership")
SEQUENCER_TASK: web.AppKey[asyncio.Task[None]] = web.AppKey("audit_sequencer_task")
ANCHOR_TASK: web.AppKey[asyncio.Task[None]] = web.AppKey("audit_anchor_task")
