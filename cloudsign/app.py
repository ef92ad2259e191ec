"""The composition root: `create_app(settings)` wires storage, the HSM, the
face workers, the document signer, the outgoing HTTP session, every feature
and their background work, each resource with its own cleanup context (torn
down in reverse order), and every feature's routes.

Features never construct each other; they get what they need here, by role
(`hsm_bridge.KeyCustody`, `Sealer`, ...) or by service. Tests may set
`app[CLOCK]` before start-up to run every service on a clock they move.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, time
from typing import Final

import aiohttp
from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from biometrics import FaceWorkerPool
from cloudsign import __version__
from cloudsign.accounts import AccountService
from cloudsign.accounts import api as accounts_api
from cloudsign.appkeys import (
    ACCOUNTS,
    ANCHOR_TASK,
    ANCHORER,
    AUDIT_LOG,
    CA,
    CABINET,
    CLOCK,
    CREDENTIALS,
    DATABASE,
    DEVICE_BINDING,
    DEVICES,
    EGOV_QR,
    FACE_POOL,
    FACES,
    GUARD,
    HSM,
    HTTP_CLIENT,
    LEADERSHIP,
    LIFECYCLE,
    LIMITS,
    METRICS,
    OPERATOR_URL,
    OPERATORS,
    PROOFING,
    PUSH,
    READINESS,
    RELYING_PARTIES,
    REVOCATION,
    SEQUENCER_TASK,
    SETTINGS,
    SIGNING,
    SIGNING_REQUESTS,
    STATUS,
    STATUS_OPERATIONS,
    TOTP_CLOCK,
    TRANSPORT_KEYS,
)
from cloudsign.audit import Anchorer, AuditLog, ensure_audit_keys, run_retention, run_sequencer
from cloudsign.audit import api as audit_api
from cloudsign.ca import CertificateAuthority
from cloudsign.ca import api as ca_api
from cloudsign.clock import Clock, utc_now
from cloudsign.credentials import CredentialService, TransportKeys
from cloudsign.credentials import api as credentials_api
from cloudsign.faces import FaceService, policy_from
from cloudsign.faces import api as faces_api
from cloudsign.guard import Guard, Limits
from cloudsign.instance import ca_profile, prepare_hsm
from cloudsign.interpreter import pin_recursion_limit
from cloudsign.lifecycle import LifecycleService
from cloudsign.lifecycle import api as lifecycle_api
from cloudsign.operators import OperatorService
from cloudsign.operators import api as operators_api
from cloudsign.operators.console import ConsoleHeaders, console_routes, console_vendor_routes
from cloudsign.portal import api as portal_api
from cloudsign.proofing import (
    HttpIdentityRegistry,
    IdentityRegistry,
    ProofingService,
    load_registry_key,
)
from cloudsign.proofing import api as proofing_api
from cloudsign.settings import Settings
from cloudsign.signing import Cabinet, DocumentWorker, FactorCheck, SigningService, csc
from cloudsign.signing import api as signing_api
from cloudsign.status import StatusOperations, StatusServices, ensure_service_keys
from cloudsign.status import api as status_api
from cloudsign.storage import Database
from cloudsign.storage.leader import Leadership
from cloudsign.tasks import stop_tasks
from cloudsign.validation import VALIDATION, ValidationService
from cloudsign.validation import api as validation_api
from cloudsign.web import health, metrics, openapi
from cloudsign.web.caching import no_store_middleware
from cloudsign.web.client import client_address_middleware
from cloudsign.web.health import Probe
from cloudsign.web.logs import (
    SafeAccessLogger,
    access_logger,
    install_log_policy,
    install_request_ids,
    request_id_middleware,
)
from cloudsign.web.metrics import Metrics, metrics_middleware
from cloudsign.web.openapi import OPENAPI_DOCUMENT
from cloudsign.web.problems import problem_middleware
from cloudsign.web.proxies import forwarded_middleware, install_hsts
from hsm_bridge import HsmBridge, HsmError
from mobile_api import (
    Callbacks,
    DeskAccess,
    DeviceBinding,
    DeviceService,
    EgovQr,
    MobileSettings,
    PushService,
    RelyingParties,
    SigningRequests,
)
from mobile_api.api import operator_routes as mobile_operator_routes
from mobile_api.api import routes as mobile_routes
from mobile_api.oauth import CSC_OAUTH, CscOAuth
from mobile_api.oauth import routes as csc_oauth_routes
from mobile_api.webapp import APP_HEADERS as MOBILE_APP_HEADERS
from mobile_api.webapp import routes as mobile_app_routes

log = logging.getLogger(__name__)
CleanupContext = Callable[[web.Application], AsyncIterator[None]]
SWEEP_INTERVAL_SECONDS: Final = 60.0
#: The outgoing HTTP session's limit per request (the chain's JSON-RPC).
HTTP_CLIENT_TIMEOUT: Final = aiohttp.ClientTimeout(total=30)


def _clock(app: web.Application) -> Clock:
    return app.get(CLOCK, utc_now)


# -- resources ------------------------------------------------------------------


async def _database(app: web.Application) -> AsyncIterator[None]:
    db = Database(app[SETTINGS].effective_database_url)
    await db.migrate()
    app[DATABASE] = db
    app[READINESS]["database"] = Probe(db.ping)
    yield
    await db.close()


async def _hsm(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    loop = asyncio.get_running_loop()
    # First start creates the token (child processes); keep that off the loop.
    access = await loop.run_in_executor(None, prepare_hsm, settings)
    bridge = HsmBridge(access.module, access.token_label, access.pin)
    await bridge.start()
    try:
        profile = ca_profile(settings.ca)
        await CertificateAuthority.initialise(bridge, settings.pki_dir, profile)
        app[HSM] = bridge
        app[CA] = CertificateAuthority.load(bridge, settings.pki_dir, profile)
        bridge.observer = app[METRICS].observe_hsm
        app[METRICS].hsm_queue.set_function(lambda: bridge.pending)
        app[READINESS]["hsm"] = Probe(bridge.ping)
        yield
    finally:
        await bridge.close()


async def _face_pool(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS].faces
    # Warmed worker processes: dlib never runs on the event loop.
    pool = FaceWorkerPool(policy_from(settings), workers=settings.workers)
    await pool.start()
    app[FACE_POOL] = pool
    pool.observer = app[METRICS].observe_face
    app[METRICS].face_queue.set_function(lambda: pool.pending)

    async def face_pool_ready() -> None:
        if not pool.ready:
            raise RuntimeError("face workers are down")

    app[READINESS]["face_pool"] = Probe(face_pool_ready)
    yield
    await pool.close()


async def _http_client(app: web.Application) -> AsyncIterator[None]:
    async with aiohttp.ClientSession(timeout=HTTP_CLIENT_TIMEOUT) as session:
        app[HTTP_CLIENT] = session
        yield


async def _status(app: web.Application) -> AsyncIterator[None]:
    """CRL, OCSP, TSA, notices (cloudsign/status); the revocation watcher and
    the CRL follower unless `status_background_tasks` is off (publication
    runs in the leader alone: `_background`)."""
    settings = app[SETTINGS].status
    status = await StatusServices.build(
        settings, app[DATABASE], app[HSM], app[CA], clock=_clock(app)
    )
    app[STATUS] = status
    app[REVOCATION] = status.revocation
    tasks = await status.start_watching() if settings.background_tasks else []
    yield
    await stop_tasks(tasks)


async def _features(app: web.Application) -> AsyncIterator[None]:
    """Every feature's service, wired to the others it needs."""
    settings, db, hsm, clock = app[SETTINGS], app[DATABASE], app[HSM], _clock(app)
    guard = Guard(db, clock=clock)
    guard.on_refusal = app[METRICS].observe_refusal
    limits = Limits.from_settings(settings.guard)
    accounts = AccountService(
        db, hsm, settings.accounts, guard, limits, clock=clock, totp_clock=app.get(TOTP_CLOCK)
    )
    operators = OperatorService(
        db, hsm, guard, limits, settings.operators, clock=clock, totp_clock=app.get(TOTP_CLOCK)
    )
    transport = TransportKeys(db, hsm, ttl=settings.credentials.transport_key_ttl, clock=clock)
    faces = FaceService(db, hsm, app[FACE_POOL], settings.faces, guard, limits, clock=clock)
    proofing = ProofingService(
        db,
        hsm,
        faces,
        accounts,
        guard,
        limits,
        settings.proofing,
        _registry(settings, app[HTTP_CLIENT], clock),
        clock=clock,
    )
    credentials = CredentialService(
        db,
        hsm,
        app[CA],
        accounts,
        faces,
        transport,
        app[REVOCATION],
        proofing,
        settings.credentials,
        clock=clock,
    )
    # Deleting an account erases what each feature keeps of the owner.
    accounts.on_delete(credentials)
    accounts.on_delete(faces)
    factors = FactorCheck(
        hsm, accounts, faces, transport, guard, limits, on_rewrap=credentials.store_rewrapped
    )
    documents = DocumentWorker()
    await documents.start()
    app[GUARD] = guard
    app[LIMITS] = limits
    app[ACCOUNTS] = accounts
    app[OPERATORS] = operators
    app[TRANSPORT_KEYS] = transport
    app[FACES] = faces
    app[PROOFING] = proofing
    app[CREDENTIALS] = credentials
    app[CABINET] = Cabinet(db)
    app[SIGNING] = SigningService(
        db, hsm, app[CA], credentials, factors, documents, settings.signing, clock=clock
    )
    mobile = MobileSettings.from_settings(settings)
    devices = DeviceService(db, guard, limits, mobile, clock=clock)
    accounts.use_devices(devices)
    accounts.on_delete(devices)
    requests = SigningRequests(
        db,
        hsm,
        hsm,
        credentials,
        app[SIGNING],
        factors,
        devices,
        accounts,
        mobile,
        guard,
        limits,
        clock=clock,
    )
    parties = RelyingParties(db, hsm, clock=clock)
    callbacks = Callbacks(db, parties, app[HTTP_CLIENT])
    requests.add_decided_listener(callbacks.send)
    egov = EgovQr(db, hsm, parties, requests, app[HTTP_CLIENT], mobile, clock=clock)
    requests.add_decided_listener(egov.deliver)
    app[EGOV_QR] = egov
    requests.push = PushService(db, hsm, app[HTTP_CLIENT], mobile, clock=clock)
    app[PUSH] = requests.push
    app[RELYING_PARTIES] = parties
    app[CSC_OAUTH] = CscOAuth(db, parties, requests, credentials, guard, limits, clock=clock)
    app[DEVICES] = devices
    app[SIGNING_REQUESTS] = requests
    app[DEVICE_BINDING] = DeviceBinding(
        devices,
        requests,
        credentials,
        faces,
        factors,
        app[SIGNING],
        DeskAccess(proofing, accounts, guard, limits),
    )
    app[LIFECYCLE] = LifecycleService(
        db, accounts, credentials, faces, factors, transport, hsm, guard, limits, clock=clock
    )
    app[STATUS_OPERATIONS] = StatusOperations(
        app[STATUS], operators, bulk_threshold=settings.bulk_revocation_threshold
    )
    try:
        yield
    finally:
        await requests.close()
        await documents.close()


async def _validation(app: web.Application) -> AsyncIterator[None]:
    """The validation service's worker processes (cloudsign/validation)."""
    service = await ValidationService.start(app[SETTINGS].validation)
    app[VALIDATION] = service
    try:
        yield
    finally:
        await service.close()


async def service_keys(bridge: HsmBridge, settings: Settings) -> list[str]:
    """The OCSP, TSA, audit-log and anchoring keys, generated if missing
    (`cloudsign.instance.initialise`, before any service process starts)."""
    made = await ensure_service_keys(bridge, ca_profile(settings.ca).algorithm)
    return made + await ensure_audit_keys(bridge)


def _registry(
    settings: Settings, http: aiohttp.ClientSession, clock: Clock
) -> IdentityRegistry | None:
    """The national identity registry, if one is configured (remote proofing)."""
    s = settings.proofing
    if not s.registry_url:
        return None
    return HttpIdentityRegistry(
        s.registry_url,
        load_registry_key(s.registry_public_key),
        http,
        max_age=s.registry_max_age,
        clock=clock,
    )


async def _operator_listener(app: web.Application) -> AsyncIterator[None]:
    """The operator API and console, on their own address (loopback by
    default), never on the public listener; they share the app's services."""
    settings = app[SETTINGS].operators
    operator_app = web.Application(
        client_max_size=app[SETTINGS].max_upload_bytes,
        middlewares=[
            request_id_middleware,
            metrics_middleware,
            ConsoleHeaders(portal_api.SECURITY_HEADERS),
            client_address_middleware,
            problem_middleware,
        ],
    )
    install_request_ids(operator_app)
    for key, value in app.items():
        operator_app[key] = value
    operator_app[OPENAPI_DOCUMENT] = openapi.build_openapi(
        OPERATOR_ROUTES,
        title="cloudsign operators",
        version=__version__,
        server="/",  # wherever the staff network reaches the listener
    )
    for routes in OPERATOR_ROUTES:
        operator_app.add_routes(routes)
    runner = web.AppRunner(
        operator_app, access_log_class=SafeAccessLogger, access_log=access_logger()
    )
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port, reuse_port=app[SETTINGS].reuse_port)
    await site.start()
    port = runner.addresses[0][1] if runner.addresses else settings.port
    app[OPERATOR_URL] = f"http://{settings.host}:{port}"
    log.info("operator listener on %s", app[OPERATOR_URL])
    try:
        yield
    finally:
        await runner.cleanup()


async def _sweeper(app: web.Application) -> AsyncIterator[None]:
    async def run() -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_SECONDS)
            try:
                n = await app[TRANSPORT_KEYS].sweep()
                if n:
                    log.info("destroyed %d expired transport keys", n)
                await app[PROOFING].sweep()
                n = await app[SIGNING].sads.sweep()
                if n:
                    log.info("ended %d expired SADs and their HSM keys", n)
            except (HsmError, OSError, SQLAlchemyError) as e:
                log.warning("sweep failed: %s", e)

    task = asyncio.create_task(run(), name="transport-key-sweeper")
    yield
    await stop_tasks([task])


async def _audit(app: web.Application) -> AsyncIterator[None]:
    """The audit log (HSM keys, tree from the table) and the anchorer."""
    settings, db, hsm, clock = app[SETTINGS].audit, app[DATABASE], app[HSM], _clock(app)
    audit_log = AuditLog(db, hsm, hsm, settings, now=clock)
    await audit_log.start()
    anchorer = Anchorer(db, hsm, settings.chain, audit_log, app[HTTP_CLIENT], now=clock)
    await anchorer.start()
    app[AUDIT_LOG] = audit_log
    app[ANCHORER] = anchorer
    app[METRICS].add_refresher(lambda: _audit_figures(app))
    app[READINESS]["chain"] = Probe(anchorer.reachable, required=False)
    try:
        yield
    finally:
        await anchorer.close()


async def _audit_figures(app: web.Application) -> None:
    """Sequencer lag and the last anchored day, read at every scrape."""
    m = app[METRICS]
    try:
        count, oldest = await app[AUDIT_LOG].sequencer_lag()
        day = await app[ANCHORER].last_confirmed_day()
    except (SQLAlchemyError, OSError) as e:  # asyncpg: a refused connection is an OSError
        log.warning("audit figures unavailable: %s", e)
        return
    m.sequencer_lag_events.set(count)
    m.sequencer_lag_seconds.set(
        0.0 if oldest is None else max(0.0, (_clock(app)() - oldest).total_seconds())
    )
    m.last_anchored_day.set(0 if day is None else datetime.combine(day, time(), UTC).timestamp())


async def _background(app: web.Application) -> AsyncIterator[None]:
    """The work that runs exactly once across processes, in the leader
    (cloudsign/storage/leader.py): the audit sequencer with day close,
    anchoring and retention (unless `audit_background_tasks` is off), and CRL
    publication (unless `status_background_tasks` is off). Start-up tries to
    lead at once, so a single process has its tasks before it serves."""
    settings = app[SETTINGS]
    audit, status = settings.audit.background_tasks, settings.status.background_tasks
    if not (audit or status):
        yield
        return
    leadership = Leadership(app[DATABASE], "background")
    app[LEADERSHIP] = leadership
    app[METRICS].leader.set_function(lambda: int(leadership.leading))
    app[METRICS].leader_attempts.set_function(lambda: leadership.attempts)

    async def start() -> list[asyncio.Task[None]]:
        tasks: list[asyncio.Task[None]] = []
        if status:
            tasks += await app[STATUS].start_publishing()
        if audit:
            audit_log = app[AUDIT_LOG]
            interval = settings.audit.sequence_interval.total_seconds()
            app[SEQUENCER_TASK] = asyncio.create_task(
                run_sequencer(audit_log, interval), name="audit-sequencer"
            )
            app[ANCHOR_TASK] = asyncio.create_task(app[ANCHORER].run(), name="audit-anchoring")
            tasks += [
                app[SEQUENCER_TASK],
                app[ANCHOR_TASK],
                asyncio.create_task(run_retention(audit_log), name="audit-retention"),
            ]
        return tasks

    app[ANCHORER].fence = leadership.confirm
    await leadership.start(start)
    yield
    await leadership.stop()


#: Resources in start-up order (torn down in reverse): each after the ones it uses.
CLEANUP_CONTEXTS: Final[list[CleanupContext]] = [
    _database,
    _hsm,
    _face_pool,
    _http_client,
    _status,
    _features,
    _validation,
    _sweeper,
    _audit,
    _background,
    _operator_listener,
]

#: Route tables of the public listener.
ROUTES: Final[list[web.RouteTableDef]] = [
    health.routes,
    metrics.routes,
    openapi.routes,
    accounts_api.routes,
    proofing_api.routes,
    lifecycle_api.routes,
    credentials_api.routes,
    faces_api.routes,
    signing_api.routes,
    csc.routes,
    csc_oauth_routes,
    ca_api.routes,
    audit_api.routes,
    status_api.routes,
    validation_api.routes,
    mobile_routes,
    mobile_app_routes,
    portal_api.routes,
]

#: Route tables of the operator listener.
OPERATOR_ROUTES: Final[list[web.RouteTableDef]] = [
    health.routes,
    metrics.routes,
    operators_api.operator_routes,
    proofing_api.operator_routes,
    status_api.operator_routes,
    signing_api.operator_routes,
    audit_api.operator_routes,
    mobile_operator_routes,
    console_routes,
    console_vendor_routes(portal_api.VENDOR),
]


async def _pin_interpreter(app: web.Application) -> None:
    # After every cleanup context has started (and imported what it needs).
    pin_recursion_limit()


def create_app(settings: Settings) -> web.Application:
    install_log_policy()
    pin_recursion_limit()
    # The app-wide cap is the upload limit; JSON bodies are held to max_body_bytes.
    app = web.Application(
        client_max_size=settings.max_upload_bytes,
        middlewares=[
            request_id_middleware,
            metrics_middleware,
            forwarded_middleware(settings.trusted_proxy_networks),
            no_store_middleware,
            client_address_middleware,
            problem_middleware,
        ],
    )
    install_request_ids(app)
    install_hsts(app, settings.effective_public_url)
    app[SETTINGS] = settings
    app[METRICS] = Metrics()
    app[READINESS] = {}
    # The app under /app/ answers with the portal's CSP and hardening headers.
    app[MOBILE_APP_HEADERS] = portal_api.SECURITY_HEADERS
    app.cleanup_ctx.extend(CLEANUP_CONTEXTS)
    app.on_startup.append(_pin_interpreter)
    for routes in ROUTES:
        app.add_routes(routes)
    app[OPENAPI_DOCUMENT] = openapi.build_openapi(
        ROUTES, title="cloudsign", version=__version__, server=settings.effective_public_url
    )
    return app
