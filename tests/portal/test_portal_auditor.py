"""The auditor's page in a real browser: daily checkpoints with their anchors
on a real anvil, and an inclusion proof checked by the page itself (RFC 9162
hashing and the log's Ed25519 note signature, in WebCrypto) — a proof
altered on the way is caught by the browser. Leaves are v2: the page checks
public leaves (commitments), and an owner's bundle with its opening is
checked against the commitment too (the same formula as audit_chain's).

SQLite only (the /log endpoints run on both databases in tests/audit/)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Route, expect

from audit_chain import AnvilProcess
from cloudsign.appkeys import ANCHORER, AUDIT_LOG
from cloudsign.audit import Anchorer
from cloudsign.portal import api as portal_routes
from cloudsign.settings import Settings
from tests.audit.conftest import FakeClock, audit_only_app, audit_settings, wait_for
from tests.audit.support import append_many
from tests.portal.browser import Traffic, shot
from tests.portal.conftest import Opener

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("backend", ["sqlite"], indirect=True)]

DAYS = (date(2026, 3, 1), date(2026, 3, 2))


@pytest.fixture
async def audit_portal(
    base_settings: Settings, audit_db: str, anvil: AnvilProcess, clock: FakeClock
) -> AsyncIterator[TestServer]:
    """The audit log, two closed and anchored days, and the portal pages."""
    app = audit_only_app(audit_settings(base_settings, audit_db, anvil.rpc_url), clock)
    app.add_routes(portal_routes.routes)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        for count in (5, 3):
            await append_many(server, count)
            await server.app[AUDIT_LOG].sequence_pending()
            clock.advance(days=1)
            await server.app[AUDIT_LOG].close_due_days()
        anchorer: Anchorer = server.app[ANCHORER]
        for day in DAYS:

            async def confirmed(day: date = day) -> bool:
                await anchorer.step()
                state = await anchorer.anchor_state(day)
                return state is not None and state.status == "confirmed"

            await wait_for(confirmed)
        yield server
    finally:
        await server.close()


async def test_auditor_sees_anchors_and_checks_a_proof_in_the_browser(
    audit_portal: TestServer, open_browser: Opener, traffic: Traffic, tmp_path: Path
) -> None:
    base = str(audit_portal.make_url("")).rstrip("/")
    ctx = await open_browser("obama_1.jpg", blink=False)
    page = await ctx.new_page()
    await page.goto(f"{base}/portal/#/auditor")
    await page.select_option("#lang", "en")
    await expect(page.locator("body")).to_have_attribute("data-ready", "auditor")

    rows = page.locator("#aud-days tbody tr")
    await expect(rows).to_have_count(2)
    await expect(rows.first).to_contain_text("2026-03-02")
    await expect(rows.first).to_contain_text("confirmed")
    tx = rows.first.locator("a")
    # A local dev chain has no public explorer: the link is the anchor record.
    assert await tx.get_attribute("href") == "/log/anchors/2026-03-02"
    anchor = await (await page.request.get(f"{base}/log/anchors/2026-03-02")).json()
    assert await tx.get_attribute("title") == anchor["tx_hash"]

    steps = page.locator("#proof-steps li")
    status = page.locator("#proof-form .status")
    await page.fill("#proof-query", "6")
    await page.click("#proof-form button[type=submit]")
    await expect(status).to_have_class(re.compile(r"\bok\b"))
    await expect(steps).to_have_count(5)
    await expect(page.locator("#proof-steps li.bad")).to_have_count(0)
    await shot(page, "17-auditor")

    # By leaf hash, too.
    bundle = await (await page.request.get(f"{base}/log/proof?index=2")).json()
    await page.fill("#proof-query", bundle["leaf_hash"])
    await page.click("#proof-form button[type=submit]")
    await expect(status).to_have_text(re.compile(r"The event is in the log \(#2\)"))

    # A proof altered in transit: the page's own hashing refuses it.
    async def tamper(route: Route) -> None:
        response = await route.fetch()
        body: dict[str, Any] = await response.json()
        first = body["proof"][0]
        body["proof"][0] = ("0" if first[0] != "0" else "1") + first[1:]
        await route.fulfill(response=response, body=json.dumps(body))

    await page.route("**/log/proof?*", tamper)
    await page.fill("#proof-query", "4")
    await page.click("#proof-form button[type=submit]")
    await expect(status).to_have_class(re.compile(r"\bbad\b"))
    await expect(page.locator("#proof-steps li.bad")).to_contain_text("root")
    await shot(page, "18-auditor-tampered")
    await page.unroute("**/log/proof?*", tamper)

    # The public bundle is a commitment only; an owner's bundle carries the
    # opening, which the page checks with its own SHA-256 (an opening taken
    # here from the auditor's full export of the day).
    public = await (await page.request.get(f"{base}/log/proof?index=6")).json()
    assert public["opening"] is None and set(public["leaf"]) == {
        "commitment", "index", "time", "type", "v",
    }  # fmt: skip
    # (The full export is the auditors', on the operator listener: read it
    # from the service here.)
    full = await audit_portal.app[AUDIT_LOG].write_export(
        date.fromisoformat(public["day"]), tmp_path / "full.jsonl", full=True
    )
    opened = {
        o["leaf"]["index"]: o["opening"]
        for o in map(json.loads, full.read_bytes().splitlines()[1:])
    }
    for path in ("/api/v1/audit/log/exports/", "/operator/api/v1/audit/log/exports/"):
        assert (await page.request.get(f"{base}{path}{public['day']}")).status == 404

    def owners_bundle(alter: bool) -> Any:
        async def serve(route: Route) -> None:
            response = await route.fetch()
            body: dict[str, Any] = await response.json()
            opening = dict(opened[body["index"]])
            if alter:
                opening["salt"] = ("1" if opening["salt"][0] == "0" else "0") + opening["salt"][1:]
            body["opening"] = opening
            await route.fulfill(response=response, body=json.dumps(body))

        return serve

    honest = owners_bundle(alter=False)
    await page.route("**/log/proof?*", honest)
    await page.fill("#proof-query", "6")
    await page.click("#proof-form button[type=submit]")
    await expect(status).to_have_text(re.compile(r"The event is in the log \(#6\)"))
    await expect(steps).to_have_count(6)
    await expect(page.locator("#proof-steps li.ok")).to_have_count(6)
    await expect(steps.nth(1)).to_contain_text("opening")
    await page.unroute("**/log/proof?*", honest)
    await page.route("**/log/proof?*", owners_bundle(alter=True))
    await page.fill("#proof-query", "7")
    await page.click("#proof-form button[type=submit]")
    await expect(status).to_have_class(re.compile(r"\bbad\b"))
    await expect(page.locator("#proof-steps li.bad")).to_have_count(1)
    await expect(page.locator("#proof-steps li.bad")).to_contain_text("opening")
    assert not traffic.problems, traffic.problems
