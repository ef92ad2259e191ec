"""The portal's own qualities in the browser: three languages, a phone-sized
screen, keyboard use with a visible focus, nothing secret in web storage,
and the service's lock and rate-limit answers said plainly in each language."""

from __future__ import annotations

import json
import re

import pytest
from playwright.async_api import Route, expect

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

    # The desk's link opens the enrolment with the code filled in, and the
    # code leaves the address bar.
    code = "ABCD-EFGH-JKLM-NPQR-STUV"
    await page.goto(f"{base_url}/portal/#/activate/{code}")
    await expect(page.locator("body")).to_have_attribute("data-ready", "enrol")
    await expect(page.locator("#activation-code")).to_have_value(code)
    assert page.url.endswith("/portal/#/enrol")
    await page.select_option("#lang", "ru")
    await expect(page.locator("#enrol-h")).to_have_text("Получить облачную подпись")
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
    await page.keyboard.type("123456")
    await page.keyboard.press("Tab")
    await expect(page.locator(":focus")).to_have_id("login-password")
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


LIMITS = {
    "kk": (
        "Сәтсіз әрекеттер тым көп: қолжетімділік бұғатталды. 15 минуттан кейін қайталаңыз.",
        "Сұраулар тым көп. 45 секундтан кейін қайталаңыз.",
    ),
    "ru": (
        "Слишком много неудачных попыток: доступ заблокирован. Повторите через 15 мин.",
        "Слишком много запросов. Повторите через 45 с.",
    ),
    "en": (
        "Too many failed attempts: this is locked. Try again in 15 min.",
        "Too many requests. Try again in 45 s.",
    ),
}


async def test_locks_and_rate_limits_say_how_long_in_each_language(
    open_browser: Opener, base_url: str, traffic: Traffic
) -> None:
    """A 423 and a 429 answer (as the guard sends them, with Retry-After)
    read as a wait, not as a wrong entry; the form stays usable."""
    ctx = await open_browser("obama_1.jpg", blink=False)
    page = await ctx.new_page()
    answers: list[tuple[int, str, int]] = []

    async def refuse(route: Route) -> None:
        status, code, wait = answers.pop(0)
        await route.fulfill(
            status=status,
            headers={"Retry-After": str(wait), "Cache-Control": "no-store"},
            content_type="application/problem+json",
            body=json.dumps({"status": status, "code": code, "detail": "wait"}),
        )

    await page.route("**/portal/session/challenge", refuse)
    await page.goto(f"{base_url}/portal/#/login")
    await expect(page.locator("body")).to_have_attribute("data-ready", "login")
    status = page.locator("#login-form .status")
    for lang, (locked, limited) in LIMITS.items():
        await page.select_option("#lang", lang)
        for answer, text in (((423, "locked", 900), locked), ((429, "rate_limited", 45), limited)):
            answers.append(answer)
            await page.fill("#login-iin", "900101300017")
            await page.fill("#login-otp", "123456")
            await page.fill("#login-password", "whatever it is")
            await page.click("#login-form button[type=submit]")
            await expect(status).to_have_text(text)
            await expect(status).to_have_class(re.compile(r"\blimit\b"))
            await expect(page.locator("#login-form button[type=submit]")).to_be_enabled()
        await shot(page, f"00-login-limited-{lang}")
    assert not answers
    assert not traffic.problems, traffic.problems
