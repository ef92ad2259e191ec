"""Fixtures of the app's browser tests.

The service runs on `http://localhost:<port>` with `public_url` set to it,
so the WebAuthn relying party is `localhost` (a registrable name; an IP
address is none), and with the app mounted (`mobile_api.webapp`). It is a
server of its own, on its own database of the session's backend, sharing
the session's HSM token and data directory, with its own registration desk.
It overrides the root `settings`, `server`, `base_url`, `staff` and `app`,
so `client` and the portal tests' `proof` speak to it too.

Phones are Chromium (Debian's, never downloaded) in Playwright's Pixel 7
emulation, with a virtual platform authenticator over CDP and a fake camera
(`tests/app/phone.py`).
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, Playwright

import mobile_api.webapp
from cloudsign.app import create_app
from cloudsign.appkeys import TOTP_CLOCK
from cloudsign.portal.api import SECURITY_HEADERS
from cloudsign.settings import Settings, load_settings
from tests.app.phone import FakeCamera, Phone
from tests.helpers import FAST_SETTINGS, PG_ADMIN_DSN, free_port, pg_create, pg_drop
from tests.helpers import TOTP_CLOCK as TEST_TOTP_CLOCK
from tests.portal.browser import Traffic, launch

# The portal tests' Playwright driver, traffic recorder and registration desk.
from tests.portal.conftest import playwright_driver, proof, traffic  # noqa: F401
from tests.staff import STAFF, Staff, bootstrap_staff

PhoneOpener = Callable[..., Awaitable[Phone]]
#: What a phone's platform authenticator is: resident keys, user verification (the unlock).
AUTHENTICATOR: dict[str, Any] = {
    "protocol": "ctap2",
    "transport": "internal",
    "hasResidentKey": True,
    "hasUserVerification": True,
    "isUserVerified": True,
}


def mount_app(app: web.Application) -> None:
    """The app's routes and headers, unless the composition root mounts them already."""
    mounted = any(
        r.resource is not None and r.resource.canonical == "/app/sw.js" for r in app.router.routes()
    )
    if not mounted:
        app.add_routes(mobile_api.webapp.routes)
    if mobile_api.webapp.APP_HEADERS not in app:
        app[mobile_api.webapp.APP_HEADERS] = SECURITY_HEADERS


@pytest.fixture(scope="session")
def app_database(
    backend: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A database of the backend for the app's server alone."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('app') / 'app.db'}"
        return
    request.getfixturevalue("pg_database")  # skips (or fails in CI) without PostgreSQL
    name = f"cloudsign_app_{secrets.token_hex(4)}"
    asyncio.run(pg_create(name))
    yield f"{PG_ADMIN_DSN.rsplit('/', 1)[0]}/{name}"
    asyncio.run(pg_drop(name))


@pytest.fixture(scope="session")
def settings(base_settings: Settings, app_database: str) -> Settings:
    port = free_port()
    return load_settings(
        env={},
        data_dir=base_settings.data_dir,
        port=port,
        database_url=app_database,
        public_url=f"http://localhost:{port}",
        **FAST_SETTINGS,
        face_workers=1,
        audit_background_tasks=False,
        status_background_tasks=False,
    )


@pytest.fixture(scope="session")
async def server(settings: Settings) -> AsyncIterator[TestServer]:
    app = create_app(settings)
    app[TOTP_CLOCK] = TEST_TOTP_CLOCK
    mount_app(app)
    srv = TestServer(app, host="localhost", port=settings.port)
    await srv.start_server()
    assert str(srv.make_url("")).rstrip("/") == settings.effective_public_url
    async with aiohttp.ClientSession() as http:
        await bootstrap_staff(app, http, settings.effective_public_url)
        yield srv
    await srv.close()


# Session fixtures are cached by name for the whole run: those of the root
# conftest that depend on `server` are named again here, so that they are
# this server's even when other tests made the root ones first.


@pytest.fixture(scope="session")
def base_url(server: TestServer) -> str:
    return str(server.make_url("")).rstrip("/")


@pytest.fixture(scope="session")
def staff(server: TestServer, base_url: str) -> Staff:
    return STAFF[base_url]


@pytest.fixture(scope="session")
def app(server: TestServer) -> web.Application:
    return server.app


_clips = itertools.count(1)


@pytest.fixture
async def open_phone(
    playwright_driver: Playwright,  # noqa: F811
    tmp_path: Path,
    traffic: Traffic,  # noqa: F811
) -> AsyncIterator[PhoneOpener]:
    """`await open_phone(face, service_workers=...)`: a Chromium phone (Pixel 7)
    whose camera shows `face`, with a virtual platform authenticator; every
    page is recorded in `traffic`."""
    browsers: list[Browser] = []

    async def open_(face: str = "obama_2.jpg", *, service_workers: str = "allow") -> Phone:
        camera = FakeCamera(tmp_path / f"phone{next(_clips)}.y4m", face)
        camera.renew()
        browser = await launch(playwright_driver, camera.path)
        browsers.append(browser)
        device = dict(playwright_driver.devices["Pixel 7"])
        device.pop("default_browser_type", None)
        context = await browser.new_context(
            **device, accept_downloads=True, service_workers=service_workers
        )
        context.on("page", traffic.attach)
        page = await context.new_page()
        cdp = await context.new_cdp_session(page)
        await cdp.send("WebAuthn.enable")
        added = await cdp.send("WebAuthn.addVirtualAuthenticator", {"options": AUTHENTICATOR})
        return Phone(page, context, camera, cdp, added["authenticatorId"])

    yield open_
    for browser in browsers:
        await browser.close()
