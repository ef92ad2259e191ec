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
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from playwright.async_api import Route, expect
from web3 import Web3

from audit_chain import AnvilProcess, NoteVerifier, key_fingerprint
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
AUDITOR_JS = Path(portal_routes.__file__).parent / "static" / "js" / "auditor.js"


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


async def test_auditor_pins_the_log_key_and_reads_each_anchor_from_the_chain(
    audit_portal: TestServer,
    anvil: AnvilProcess,
    open_browser: Opener,
    traffic: Traffic,
) -> None:
    """The page trusts neither /log/keys nor /log/anchors: it pins the log
    key's fingerprint, the contract and the chain id, and reads each day's
    anchor from the chain's JSON-RPC itself; a server that swaps the key or
    shows a false root is caught."""
    base = str(audit_portal.make_url("")).rstrip("/")
    # The selector the page calls is the contract's get_anchor(uint32).
    assert Web3.keccak(text="get_anchor(uint32)")[:4].hex() == "e1b023a8"
    assert 'GET_ANCHOR_SELECTOR = "0xe1b023a8"' in AUDITOR_JS.read_text()

    ctx = await open_browser("obama_1.jpg", blink=False)
    page = await ctx.new_page()
    keys = await (await page.request.get(f"{base}/log/keys")).json()
    assert keys["chain_rpc_url"] == anvil.rpc_url
    assert keys["log_key"] == audit_portal.app[AUDIT_LOG].verifier.vkey
    printed = key_fingerprint(keys["log_key"])
    chain_calls: list[str] = []
    page.on(
        "request",
        lambda r: r.url.startswith(anvil.rpc_url) and chain_calls.append(r.post_data or ""),
    )
    response = await page.goto(f"{base}/portal/#/auditor")
    assert response is not None
    csp = response.headers["content-security-policy"]
    assert f"connect-src 'self' {anvil.rpc_url.rstrip('/')}" in csp
    await page.select_option("#lang", "en")
    await expect(page.locator("body")).to_have_attribute("data-ready", "auditor")
    await expect(page.locator("#aud-keys")).to_contain_text(printed)
    checks = page.locator("#aud-pin-checks li")
    await expect(checks).to_have_count(1)
    await expect(checks.first).to_have_class(re.compile(r"\bwarn\b"))

    # Each day's anchor, read by the browser from anvil: the same root and size.
    on_chain = page.locator("#aud-days tbody tr td:nth-child(5)")
    await expect(on_chain).to_have_count(2)
    for i, day in enumerate(reversed(DAYS)):
        state = await audit_portal.app[ANCHORER].anchor_state(day)
        assert state is not None
        await expect(on_chain.nth(i)).to_have_class("ok")
        await expect(on_chain.nth(i)).to_contain_text(f"block {state.block_number}")
    assert sum("eth_call" in c and "0xe1b023a8" in c for c in chain_calls) >= 2

    # Pin what the centre publishes: all three checks pass.
    await page.fill("#pin-fp", printed.replace(" ", "").upper())
    await page.fill("#pin-contract", keys["contract"])
    await page.fill("#pin-chain", str(keys["chain_id"]))
    await page.click("#pin-form button[type=submit]")
    await expect(page.locator("#pin-form .status")).to_have_class(re.compile(r"\bok\b"))
    await expect(checks).to_have_count(3)
    await expect(page.locator("#aud-pin-checks li.ok")).to_have_count(3)
    await shot(page, "19-auditor-pinned")

    # A compromised server swaps the log key: the pin catches it at once, and
    # a proof signed by the swapped key is refused.
    name = keys["log_key"].split("+")[0]
    other = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    forged = NoteVerifier(name, other).vkey

    async def swapped_key(route: Route) -> None:
        response = await route.fetch()
        body: dict[str, Any] = await response.json()
        body["log_key"] = forged
        await route.fulfill(response=response, body=json.dumps(body))

    await page.route("**/log/keys", swapped_key)
    await page.reload()
    await expect(page.locator("body")).to_have_attribute("data-ready", "auditor")
    await expect(page.locator("#aud-pin-checks li.bad")).to_have_count(1)
    await expect(page.locator("#aud-pin-checks li.bad")).to_contain_text("fingerprint")
    await page.fill("#proof-query", "2")
    await page.click("#proof-form button[type=submit]")
    await expect(page.locator("#proof-form .status")).to_have_class(re.compile(r"\bbad\b"))
    await expect(page.locator("#proof-steps li.bad").first).to_contain_text("NOT the pinned")
    await page.unroute("**/log/keys", swapped_key)

    # It shows a false root for a day: the chain, read by the browser, disagrees.
    async def false_root(route: Route) -> None:
        response = await route.fetch()
        body: dict[str, Any] = await response.json()
        body["root"] = ("0" if body["root"][0] != "0" else "1") + body["root"][1:]
        await route.fulfill(response=response, body=json.dumps(body))

    await page.route("**/log/checkpoint", false_root)
    await page.reload()
    await expect(page.locator("body")).to_have_attribute("data-ready", "auditor")
    await expect(on_chain.first).to_have_class("bad")
    await expect(on_chain.first).to_contain_text("DIFFERS")
    await expect(on_chain.nth(1)).to_have_class("ok")
    await shot(page, "20-auditor-false-root")
    await page.unroute("**/log/checkpoint", false_root)

    # Forgotten pins: back to the warning.
    await page.click("#pin-clear")
    await expect(checks).to_have_count(1)
    await expect(checks.first).to_have_class(re.compile(r"\bwarn\b"))
    assert not traffic.problems, traffic.problems
