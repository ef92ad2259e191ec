"""The portal's own qualities in the browser: three languages, a phone-sized
screen, keyboard use with a visible focus, nothing secret in web storage."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from tests.portal.browser import Traffic, shot
from tests.portal.conftest import Opener

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("backend", ["sqlite"], indirect=True)]

TITLES = {"kk": "Бұлттық электрондық қолтаңба", "ru": "Облачная электронная подпись"}
TITLES["en"] = "Cloud digital signature"


async def test_three_languages_on_a_phone_and_by_keyboard(
    open_browser: Opener, base_url: str, traffic: Traffic
) -> None:
    ctx = await open_browser(
        "obama_1.jpg", blink=False, viewport={"width": 390, "height": 844}, is_mobile=True
    )
    page = await ctx.new_page()
    await page.goto(f"{base_url}/portal/")
    await expect(page.locator("body")).to_have_attribute("data-ready", "home")
    for lang, title in TITLES.items():
        await page.select_option("#lang", lang)
        await expect(page.locator("html")).to_have_attribute("lang", lang)
        await expect(page.locator("#home-h")).to_have_text(title)
        await shot(page, f"00-home-{lang}-phone")
    # Nothing wider than the phone's screen.
    assert await page.evaluate("document.documentElement.scrollWidth <= innerWidth")

    await page.goto(f"{base_url}/portal/#/enrol")
    await expect(page.locator("body")).to_have_attribute("data-ready", "enrol")
    await page.select_option("#lang", "ru")
    assert await page.evaluate("document.documentElement.scrollWidth <= innerWidth")
    await shot(page, "00-enrol-ru-phone")

    # Keyboard: the skip link is the first stop; a view change moves focus to
    # its heading, so Tab lands on the first field, with a visible focus ring.
    await page.goto(f"{base_url}/portal/#/login")
    await expect(page.locator("body")).to_have_attribute("data-ready", "login")
    first = await page.evaluate(
        "document.querySelector('a[href], button, input, select').className"
    )
    assert first == "skip"
    await page.keyboard.press("Tab")
    focused = page.locator(":focus")
    await expect(focused).to_have_id("login-iin")
    assert await focused.evaluate("e => getComputedStyle(e).outlineStyle") == "solid"
    await page.keyboard.type("900101300017")
    await page.keyboard.press("Tab")
    await expect(page.locator(":focus")).to_have_id("login-otp")
    await shot(page, "00-login-keyboard-phone")
    # Every input has a label.
    unlabelled = await page.evaluate(
        """() => [...document.querySelectorAll('input:not([type=hidden]), select')]
              .filter(e => !e.labels || e.labels.length === 0).map(e => e.id)"""
    )
    assert unlabelled == []
    assert await page.evaluate("sessionStorage.length") == 0
    assert await page.evaluate("Object.keys(localStorage)") == ["cloudsign.lang"]
    assert not traffic.problems, traffic.problems
