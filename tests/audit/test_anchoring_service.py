"""Anchoring on a real anvil: the auditor CLI end to end, hard kills of the
chain and of the anchoring task, no double anchor, reorgs, and a citizen
proving their enrolment events."""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import date
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from audit_chain import AnchorClient, AnvilProcess, ChainError
from audit_chain.anvil import rpc_call
from cloudsign.appkeys import ANCHOR_TASK, ANCHORER, AUDIT_LOG, DATABASE, LEADERSHIP
from cloudsign.audit import Anchorer, AuditLog
from cloudsign.audit.tables import log_anchors, log_leaves
from cloudsign.ca.tables import certificates
from cloudsign.storage.schema import events
from tests.audit.conftest import FakeClock, wait_for
from tests.audit.support import append_many, auditor, auditor_get, get_json, get_raw, staffed
from tests.helpers import enrolled, new_client

DAY1 = date(2026, 3, 1)
DAY2 = date(2026, 3, 2)


async def _owner_serial(server: Any, owner_id: str) -> str:
    """The serial of the owner's one certificate."""
    async with server.app[DATABASE].read() as conn:
        found = await conn.execute(
            select(certificates.c.serial).where(certificates.c.owner_id == owner_id)
        )
        return str(found.scalar_one())


async def _close_day(server: Any, clock: FakeClock, events_count: int = 5) -> None:
    if events_count:
        await append_many(server, events_count)
    await server.app[AUDIT_LOG].sequence_pending()
    clock.advance(days=1)
    await server.app[AUDIT_LOG].close_due_days()


async def _anchored(anchorer: Anchorer, day: date) -> Any:
    async def check() -> Any:
        await anchorer.step()
        state = await anchorer.anchor_state(day)
        return state if state is not None and state.status == "confirmed" else None

    return await wait_for(check)


async def test_anchor_lands_and_the_auditor_verifies_end_to_end(
    audit_server: Any, clock: FakeClock, anvil: AnvilProcess, tmp_path: Path
) -> None:
    server = await audit_server(full=True)
    await _close_day(server, clock)
    await _close_day(server, clock, 3)
    anchorer: Anchorer = server.app[ANCHORER]
    await _anchored(anchorer, DAY1)
    await _anchored(anchorer, DAY2)
    keys = await get_json(server, "/log/keys")
    anchor = await get_json(server, "/log/anchors/2026-03-02")
    assert anchor["contract"] == keys["contract"] and anchor["tx_hash"].startswith("0x")
    assert anchor["confirmations"] >= 2
    for day in ("2026-03-01", "2026-03-02"):
        (tmp_path / f"{day}.jsonl").write_bytes((await get_raw(server, f"/log/exports/{day}"))[1])
    result = auditor(
        "verify", str(tmp_path / "2026-03-02.jsonl"), "--rpc", anvil.rpc_url,
        "--contract", keys["contract"], "--log-key", keys["log_key"],
        "--min-confirmations", "2", "--previous", str(tmp_path / "2026-03-01.jsonl"),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "VERIFIED" in result.stdout and f"block {anchor['block_number']}" in result.stdout
    assert "7. openings               skipped" in result.stdout
    # The auditor's full export: the same anchored root, and every opening checked.
    full = tmp_path / "2026-03-02.full.jsonl"
    async with aiohttp.ClientSession() as http:
        staff = await staffed(server, http)  # on day 3: the staff's events are not in day 2
        status, body, _ = await auditor_get(staff, "/operator/api/v1/audit/log/exports/2026-03-02")
    assert status == 200
    full.write_bytes(body)
    result = auditor(
        "verify", str(full), "--rpc", anvil.rpc_url, "--contract", keys["contract"],
        "--log-key", keys["log_key"], "--min-confirmations", "2",
        "--previous", str(tmp_path / "2026-03-01.jsonl"),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "7. openings               ok" in result.stdout and "3 openings match" in result.stdout


async def test_hard_kill_of_chain_and_task_loses_nothing(
    audit_server: Any, clock: FakeClock, anvil: AnvilProcess
) -> None:
    server = await audit_server(audit_background_tasks=True)
    anchorer: Anchorer = server.app[ANCHORER]
    await _close_day(server, clock)
    confirmed = await wait_for(lambda: _status(anchorer, DAY1, "confirmed"))
    # Kill only once the dumped state holds the anchor and its confirmations.
    head = int(rpc_call(anvil.rpc_url, "eth_blockNumber"), 16)
    assert head >= confirmed.block_number
    await asyncio.to_thread(anvil.wait_for_dump, head)
    anvil.kill()
    await _close_day(server, clock, 2)
    # The anchorer tries day 2 against the dead chain and records no anchor.
    await wait_for(lambda: _tried_and_failed(anchorer))
    assert await _status(anchorer, DAY2, "confirmed") is None
    # The first process's background work dies too (its leadership with it),
    # and the chain restarts from its state file: a second process takes over.
    await server.app[LEADERSHIP].stop()
    assert server.app[ANCHOR_TASK].done()
    restarted = AnvilProcess(anvil.state_path, port=anvil.port, state_interval=1).start()
    try:
        second = await audit_server(audit_background_tasks=True)
        await wait_for(lambda: _status(second.app[ANCHORER], DAY2, "confirmed"))
        assert await _status(second.app[ANCHORER], DAY1, "confirmed")
    finally:
        restarted.kill()


async def _tried_and_failed(anchorer: Anchorer) -> bool:
    """A step against the unreachable chain has run and failed."""
    try:
        await anchorer.step()
    except ChainError as e:
        return e.code == "chain.unreachable"
    return False


async def _status(anchorer: Anchorer, day: date, status: str) -> Any:
    state = await anchorer.anchor_state(day)
    return state if state is not None and state.status == status else None


async def test_a_development_chain_is_refused_outside_development_mode(
    audit_server: Any, clock: FakeClock, anvil: AnvilProcess
) -> None:
    """A configured chain_rpc_url that answers with anvil's chain id is
    somebody's local chain: no funding, no contract, no anchor, and
    /readyz says why."""
    server = await audit_server(development=False)
    await _close_day(server, clock)
    anchorer = server.app[ANCHORER]
    blocks = int(rpc_call(anvil.rpc_url, "eth_blockNumber"), 16)
    with pytest.raises(ChainError, match="development chain"):
        await anchorer.step()
    with pytest.raises(ChainError, match="development chain"):
        await anchorer.reachable()
    assert await anchorer.anchor_state(DAY1) is None
    assert anchorer.contract_address is None
    balance = rpc_call(anvil.rpc_url, "eth_getBalance", [anchorer.address, "latest"])
    assert int(balance, 16) == 0  # never funded
    assert int(rpc_call(anvil.rpc_url, "eth_blockNumber"), 16) == blocks


async def test_a_database_error_in_a_round_does_not_end_anchoring(
    audit_server: Any, clock: FakeClock, anvil: AnvilProcess
) -> None:
    """A round whose query a dying database cut off is retried like a chain
    failure: the anchoring task lives on and anchors once the database is
    back."""
    server = await audit_server()
    await _close_day(server, clock)
    anchorer = server.app[ANCHORER]
    real_step = anchorer.step
    calls = 0

    async def cut_off() -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise DBAPIError("SELECT ...", None, Exception("connection was closed mid-operation"))
        return await real_step()

    anchorer.step = cut_off
    task = asyncio.create_task(anchorer.run())
    try:

        async def anchored() -> Any:
            assert not task.done(), task.exception()
            state = await anchorer.anchor_state(DAY1)
            return state is not None and state.status == "confirmed"

        await wait_for(anchored)
        assert calls >= 2
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_day_cannot_be_anchored_twice(
    audit_server: Any, clock: FakeClock, anvil: AnvilProcess
) -> None:
    a = await audit_server()
    b = await audit_server()
    await _close_day(a, clock)
    results = await asyncio.gather(
        a.app[ANCHORER].step(), b.app[ANCHORER].step(), return_exceptions=True
    )
    assert any(not isinstance(r, BaseException) for r in results), results
    state = await _anchored(a.app[ANCHORER], DAY1)
    await _anchored(b.app[ANCHORER], DAY1)
    async with a.app[DATABASE].read() as conn:
        assert len((await conn.execute(select(log_anchors))).all()) == 1
    cp = await a.app[AUDIT_LOG].checkpoint(DAY1)
    client = AnchorClient(anvil.rpc_url, state.contract, signer=a.app[ANCHORER]._signer)
    try:
        with pytest.raises(ChainError) as refused:
            await client.anchor(DAY1, b"\x01" * 32, cp.tree_size)
        assert refused.value.code == "chain.already_anchored"
        found = await client.find_anchor(DAY1)
        assert found is not None and found.root == cp.root
        assert "0x" + found.tx_hash.hex() == state.tx_hash
    finally:
        await client.aclose()


async def test_reorg_that_drops_the_anchor_is_anchored_again(
    audit_server: Any, clock: FakeClock, anvil: AnvilProcess
) -> None:
    server = await audit_server()
    anchorer: Anchorer = server.app[ANCHORER]
    await _close_day(server, clock)
    before = await _anchored(anchorer, DAY1)
    head = int(rpc_call(anvil.rpc_url, "eth_blockNumber"), 16)
    rpc_call(anvil.rpc_url, "anvil_reorg", [head - before.block_number + 1, []])
    client = AnchorClient(anvil.rpc_url, before.contract)
    try:
        assert await client.find_anchor(DAY1) is None
        tx = bytes.fromhex(before.tx_hash[2:])
        assert await client.transaction_confirmations(tx) is None
    finally:
        await client.aclose()
    after = await _anchored(anchorer, DAY1)
    assert after.tx_hash != before.tx_hash and after.attempts == before.attempts + 1


async def test_enrolment_leaves_and_a_citizen_proves_their_event(
    audit_server: Any, clock: FakeClock, anvil: AnvilProcess, tmp_path: Path
) -> None:
    server = await audit_server(full=True, access_token_ttl_seconds=86400)
    async with aiohttp.ClientSession() as http:
        await staffed(server, http)
        client = new_client(str(server.make_url("")).rstrip("/"), http)
        await enrolled(client)
    log: AuditLog = server.app[AUDIT_LOG]
    await log.sequence_pending()
    clock.advance(hours=15)  # past midnight in UTC+5, within the token's day
    await log.close_due_days()
    await _anchored(server.app[ANCHORER], DAY1)
    async with server.app[DATABASE].read() as conn:
        rows = (
            await conn.execute(
                select(log_leaves.c.leaf_index, events.c.event_type)
                .join(events, events.c.seq == log_leaves.c.event_seq)
                .order_by(log_leaves.c.leaf_index)
            )
        ).all()
    types = [t for _, t in rows]
    assert "key.create" in types and "cert.issue" in types
    index = next(i for i, t in rows if t == "cert.issue")
    keys = await get_json(server, "/log/keys")
    status, body, _ = await get_raw(server, f"/log/proof?index={index}")
    assert status == 200, body
    bundle = tmp_path / "bundle.json"
    bundle.write_bytes(body)
    result = auditor(
        "prove", str(bundle), "--rpc", anvil.rpc_url, "--contract", keys["contract"],
        "--log-key", keys["log_key"], "--min-confirmations", "2",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"event {index} of day 2026-03-01: PROVEN" in result.stdout
    # The same bundle by leaf hash.
    leaf_hash = json.loads(body)["leaf_hash"]
    by_hash = await get_json(server, f"/log/proof?leaf_hash={leaf_hash}")
    assert by_hash["index"] == index
    # The citizen's own view: their certificate's serial is in the opening of
    # its cert.issue leaf, and nowhere in that leaf's public bundle.
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            str(server.make_url("/api/v1/me/log/events")),
            headers={"Authorization": f"Bearer {client.access_token}"},
        ) as r,
    ):
        assert r.status == 200, await r.text()
        mine = (await r.json())["events"]
    cert = next(e for e in mine if e["leaf"]["type"] == "cert.issue")
    serial = await _owner_serial(server, str(client.owner_id))
    assert cert["opening"]["extra"]["serial"] == serial
    status, public, _ = await get_raw(server, f"/log/proof?index={cert['index']}")
    assert status == 200 and serial.encode() not in public
    bundle.write_text(json.dumps(cert["bundle"]))
    result = auditor(
        "prove", str(bundle), "--rpc", anvil.rpc_url, "--contract", keys["contract"],
        "--log-key", keys["log_key"], "--min-confirmations", "2",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3. opening                ok" in result.stdout
