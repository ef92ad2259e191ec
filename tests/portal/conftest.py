"""Fixtures of the portal browser tests: one Playwright driver per session
over Debian's Chromium, a factory of browsers each watching its own
fake-webcam clip, and the registration desk that proofs a citizen and hands
out the activation code the portal starts from."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, Playwright, async_playwright

# The audit log's fixtures (fresh database, fake clock, real anvil) for the auditor page.
from tests.audit.conftest import anvil, anvil_binary, audit_db, clock  # noqa: F401
from tests.helpers import person
from tests.portal.browser import Traffic, launch, make_clip, require_tools
from tests.staff import Staff

Opener = Callable[..., Awaitable[BrowserContext]]
#: `await proof(identity=None, face=...)` -> (identity, activation code).
Proofer = Callable[..., Awaitable[tuple[dict[str, str], str]]]


@pytest.fixture(scope="session")
async def playwright_driver() -> AsyncIterator[Playwright]:
    require_tools()
    async with async_playwright() as pw:
        yield pw


@pytest.fixture
def traffic() -> Traffic:
    return Traffic()


_seeds = itertools.count(1)


@pytest.fixture
async def open_browser(
    playwright_driver: Playwright, tmp_path: Path, traffic: Traffic
) -> AsyncIterator[Opener]:
    """`await open_browser(face, blink=..., storage_state=...)`: a fresh Chromium
    whose webcam shows `face`, and a context in it; every page is recorded."""
    browsers: list[Browser] = []

    async def open_(face: str, *, blink: bool, **context: Any) -> BrowserContext:
        seed = next(_seeds)
        clip = make_clip(tmp_path / f"cam{seed}.y4m", face, blink=blink, seed=seed)
        browser = await launch(playwright_driver, clip)
        browsers.append(browser)
        options: dict[str, Any] = {
            "accept_downloads": True,
            "viewport": {"width": 1100, "height": 900},
            **context,
        }
        ctx = await browser.new_context(**options)
        ctx.on("page", traffic.attach)
        return ctx

    yield open_
    for browser in browsers:
        await browser.close()


@pytest.fixture
def proof(staff: Staff) -> Proofer:
    """The registration desk: a live capture of `face` (a file in
    tests/data/faces), the identity approved, the activation code handed out."""

    async def proof_(
        identity: dict[str, str] | None = None, face: str = "obama_1.jpg"
    ) -> tuple[dict[str, str], str]:
        who = identity or person()
        done = await staff.registration.proof(who, face=face)
        return who, str(done["activation_code"])

    return proof_
