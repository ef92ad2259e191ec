"""The composition root: `create_app(settings)` wires storage, the HSM, the CA
and the APIs, each resource with its own cleanup context."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Final

from aiohttp import web

from biometrics import FaceWorkerPool
from cloudsign import api_enrolment, api_pki, api_signing, csc
from cloudsign.appkeys import CA, DATABASE, ENROLMENT, FACE_POOL, FACES, HSM, SETTINGS, SIGNING
from cloudsign.audit import api as audit_api
from cloudsign.audit.service import audit_resources, audit_tasks
from cloudsign.ca.authority import CertificateAuthority
from cloudsign.enrolment import EnrolmentService
from cloudsign.faces import FaceService, policy_from
from cloudsign.instance import ca_profile, prepare_hsm
from cloudsign.interpreter import pin_recursion_limit
from cloudsign.portal import routes as portal_routes
from cloudsign.settings import Settings
from cloudsign.signing.service import SigningService
from cloudsign.status import api as status_api
from cloudsign.status.runtime import status_context
from cloudsign.storage import Database
from cloudsign.web.logs import install_log_policy
from cloudsign.web.problems import problem_middleware
from hsm_bridge import HsmBridge, HsmError

log = logging.getLogger(__name__)
CleanupContext = Callable[[web.Application], AsyncIterator[None]]
SWEEP_INTERVAL_SECONDS: Final = 60.0


async def _database(app: web.Application) -> AsyncIterator[None]:
    db = Database(app[SETTINGS].effective_database_url)
    await db.migrate()
    app[DATABASE] = db
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
        profile = ca_profile(settings)
        await CertificateAuthority.initialise(bridge, settings.pki_dir, profile)
        app[HSM] = bridge
        app[CA] = CertificateAuthority.load(bridge, settings.pki_dir, profile)
        yield
    finally:
        await bridge.close()


async def _face_pool(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    # Warmed worker processes: dlib never runs on the event loop.
    pool = FaceWorkerPool(policy_from(settings), workers=settings.face_workers)
    await pool.start()
    app[FACE_POOL] = pool
    yield
    await pool.close()


async def _services(app: web.Application) -> AsyncIterator[None]:
    db, hsm, settings = app[DATABASE], app[HSM], app[SETTINGS]
    enrolment = EnrolmentService(db, hsm, app[CA], settings)
    faces = FaceService(db, hsm, app[FACE_POOL], settings)
    app[ENROLMENT] = enrolment
    app[FACES] = faces
    app[SIGNING] = SigningService(db, hsm, app[CA], enrolment, faces, settings)
    yield


async def _sweeper(app: web.Application) -> AsyncIterator[None]:
    async def run() -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_SECONDS)
            try:
                n = await app[ENROLMENT].sweep_transport_keys()
                if n:
                    log.info("destroyed %d expired transport keys", n)
            except (HsmError, OSError) as e:
                log.warning("transport key sweep failed: %s", e)

    task = asyncio.create_task(run(), name="transport-key-sweeper")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


#: Resources in start-up order (torn down in reverse): each after the ones it uses.
CLEANUP_CONTEXTS: Final[list[CleanupContext]] = [
    _database,
    _hsm,
    _face_pool,
    _services,
    _sweeper,
    audit_resources,  # the audit log (cloudsign/audit)
    audit_tasks,
    status_context,  # CRL, OCSP, TSA, notices (cloudsign/status)
]

#: Route tables of the HTTP surfaces.
ROUTES: Final[list[web.RouteTableDef]] = [
    api_enrolment.routes,
    api_signing.routes,
    csc.routes,
    api_pki.routes,
    audit_api.routes,
    status_api.routes,
    portal_routes.routes,  # the citizen's web portal (cloudsign/portal)
]


async def _pin_interpreter(app: web.Application) -> None:
    # After every cleanup context has started (and imported what it needs).
    pin_recursion_limit()


def create_app(settings: Settings) -> web.Application:
    install_log_policy()
    pin_recursion_limit()
    # The app-wide cap is the upload limit; JSON bodies are held to max_body_bytes.
    app = web.Application(
        client_max_size=settings.max_upload_bytes, middlewares=[problem_middleware]
    )
    app[SETTINGS] = settings
    app.cleanup_ctx.extend(CLEANUP_CONTEXTS)
    app.on_startup.append(_pin_interpreter)
    for routes in ROUTES:
        app.add_routes(routes)
    return app
