"""Who sees what in the audit log, over HTTP on both databases: the public
sees commitments only, an owner their own events with openings that verify,
an auditor every opening (with the auditor credential only); v1 leaves
logged before commitments keep verifying and stay out of public view."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import select, update

from audit_chain import (
    CommittedLeaf,
    EventLeaf,
    InclusionBundle,
    LeafOpening,
    NoteVerifier,
    parse_leaf,
    verify_inclusion_bundle,
)
from cloudsign.appkeys import AUDIT_LOG, DATABASE, HSM
from cloudsign.audit import AuditLog, TamperedLogError
from cloudsign.audit.leaves import EventRow, TagMaker, build_v1_leaf
from cloudsign.audit.tables import log_leaves
from cloudsign.events import EventType, append_event
from cloudsign.storage.schema import events
from tests.audit.conftest import FakeClock
from tests.audit.support import auditor, auditor_get, get_json, get_raw, staffed
from tests.helpers import activated, enrolled, new_client, person
from tests.staff import Staff

DAY1 = date(2026, 3, 1)
DAY2 = date(2026, 3, 2)
DOCUMENT = b"%PDF-1.7 the contract both parties signed"
SERIAL = "4f1e2d3c4b5a69788796a5b4c3d2e1f0"


async def _get(
    server: TestServer, path: str, headers: dict[str, str] | None = None
) -> tuple[int, bytes, Any]:
    async with (
        aiohttp.ClientSession() as s,
        s.get(str(server.make_url(path)), headers=headers or {}) as r,
    ):
        return r.status, await r.read(), r.headers


async def _owner_tag(server: TestServer, owner_id: str) -> bytes:
    tag: bytes = await server.app[HSM].hmac_sha256("audit-owner", owner_id.encode())
    return tag


async def _signing_events(server: TestServer, owner: str, *, document: bytes = DOCUMENT) -> None:
    """What signing a document and issuing a certificate log, for `owner`."""
    async with server.app[DATABASE].transaction() as conn:
        await append_event(
            conn,
            EventType.CERT_ISSUE,
            owner_id=owner,
            credential_id="c2a1f0e4-9d8b-4c7a-8e6f-1a2b3c4d5e6f",
            data={"serial": SERIAL},
            at=datetime.now(UTC),
        )
        await append_event(
            conn,
            EventType.KEY_USE,
            owner_id=owner,
            credential_id="c2a1f0e4-9d8b-4c7a-8e6f-1a2b3c4d5e6f",
            data={
                "document_hash": hashlib.sha256(document).hexdigest(),
                "hash_algorithm": "sha256",
                "authorization": "7d0c3e9a-52b1-4f6e-9a0d-3c1b2a4f5e6d",
            },
            at=datetime.now(UTC),
        )


async def _close(server: TestServer, clock: FakeClock) -> None:
    log: AuditLog = server.app[AUDIT_LOG]
    await log.sequence_pending()
    clock.advance(days=1)
    await log.close_due_days()


async def test_public_export_and_proofs_hold_no_owner_document_or_serial(
    audit_server: Any, clock: FakeClock
) -> None:
    server = await audit_server()
    owner = "5d1c9a7e-3b8f-4c2e-9a1d-0f6b2c4e8a11"
    await _signing_events(server, owner)
    await _close(server, clock)
    tag = (await _owner_tag(server, owner)).hex().encode()
    status, export, _ = await _get(server, "/log/exports/2026-03-01")
    assert status == 200
    lines = export.splitlines()
    assert json.loads(lines[0])["contents"] == "public"
    assert len(lines) == 3
    for private in (tag, hashlib.sha256(DOCUMENT).hexdigest().encode(), SERIAL.encode()):
        assert private not in export
    leaves = [parse_leaf(line) for line in lines[1:]]
    assert all(isinstance(leaf, CommittedLeaf) for leaf in leaves)
    assert [leaf.event_type for leaf in leaves] == ["cert.issue", "key.use"]
    for leaf in leaves:
        _, body, _ = await _get(server, f"/log/proof?index={leaf.index}")
        bundle = json.loads(body)
        assert bundle["opening"] is None and bundle["leaf"] == leaf.to_json_obj()
        assert tag not in body and SERIAL.encode() not in body
    # Nor does the salt stored with each leaf ever leave the database publicly.
    async with server.app[DATABASE].read() as conn:
        salts = [s for (s,) in await conn.execute(select(log_leaves.c.salt))]
    assert len(salts) == 2 and all(len(s) == 32 for s in salts)
    for salt in salts:
        assert salt.hex().encode() not in export


async def test_two_leaves_of_one_owner_share_no_public_field_beyond_type_and_day(
    audit_server: Any, clock: FakeClock
) -> None:
    server = await audit_server()
    log: AuditLog = server.app[AUDIT_LOG]
    owner = "0b9f6a2e-8d4c-4e1a-b7f3-5c2d9e8a1b60"
    for _ in range(2):
        await _signing_events(server, owner)
        await log.sequence_pending()
        clock.advance(minutes=5)  # a later sequencing round, later the same day
    clock.advance(days=1)
    await log.close_due_days()
    _, export, _ = await _get(server, "/log/exports/2026-03-01")
    uses = [json.loads(line) for line in export.splitlines()[1:]]
    uses = [u for u in uses if u["type"] == "key.use"]
    assert len(uses) == 2
    a, b = uses
    assert {k for k in a if a[k] == b[k]} == {"type", "v"}
    assert a["time"][:10] == b["time"][:10]  # the same day


async def test_owner_sees_exactly_their_own_events_with_openings_that_verify(
    audit_server: Any, clock: FakeClock, tmp_path: Path
) -> None:
    # Tokens live a day: long enough for the clock to pass the day's end.
    # Enrolment sessions live a day: long enough for the clock to pass the day's end.
    server = await audit_server(full=True, activation_ttl_seconds=86400)
    base = str(server.make_url("")).rstrip("/")
    async with aiohttp.ClientSession() as http:
        await staffed(server, http)
        alice, bob = new_client(base, http), new_client(base, http)
        alice_id = (await activated(alice))["owner_id"]
        bob_id = (await activated(bob, face="biden_1.jpg"))["owner_id"]
    await _signing_events(server, alice_id)
    await _signing_events(server, bob_id, document=b"bob's own file")
    async with server.app[DATABASE].transaction() as conn:
        await append_event(conn, EventType.AUTH_FAILURE, owner_id=None, at=datetime.now(UTC))
    log: AuditLog = server.app[AUDIT_LOG]
    await log.sequence_pending()

    def me(client: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {client.access_token}"}

    async def listing(client: Any, query: str = "") -> Any:
        status, body, headers = await _get(server, f"/api/v1/me/log/events{query}", me(client))
        assert status == 200, body
        assert headers["Cache-Control"] == "no-store"
        return json.loads(body)

    async def truth(owner_id: str) -> list[int]:
        async with server.app[DATABASE].read() as conn:
            rows = await conn.execute(
                select(log_leaves.c.leaf_index)
                .join(events, events.c.seq == log_leaves.c.event_seq)
                .where(events.c.owner_id == owner_id)
                .order_by(log_leaves.c.leaf_index)
            )
            return [int(i) for (i,) in rows]

    # Before the day closes: leaves and openings, no proof yet.
    pending = (await listing(alice))["events"]
    assert [e["index"] for e in pending] == await truth(alice_id)
    assert all(e["bundle"] is None and e["opening"] is not None for e in pending)

    clock.advance(hours=15)  # past midnight in UTC+5: day 1 closes
    assert [c.day for c in await log.close_due_days()] == [DAY1]
    keys = await get_json(server, "/log/keys")
    verifier = NoteVerifier.from_vkey(keys["log_key"])
    mine = (await listing(alice))["events"]
    theirs = (await listing(bob))["events"]
    assert [e["index"] for e in mine] == await truth(alice_id)
    assert [e["index"] for e in theirs] == await truth(bob_id)
    assert not {e["index"] for e in mine} & {e["index"] for e in theirs}
    alice_tag = await _owner_tag(server, alice_id)
    for event in mine:
        opening = event["opening"]
        assert opening["owner"] == alice_tag.hex()
        bundle = InclusionBundle.from_json(json.dumps(event["bundle"]))
        assert bundle.leaf is not None and bundle.leaf.to_json_obj() == event["leaf"]
        proven = await verify_inclusion_bundle(bundle, verifier, None)
        assert isinstance(proven.opening, LeafOpening) and proven.index == event["index"]
    assert alice_tag.hex().encode() not in json.dumps(theirs).encode()

    # The key.use event proves, with its document, through the auditor CLI.
    use = next(e for e in mine if e["leaf"]["type"] == "key.use")
    assert use["opening"]["document"] == hashlib.sha256(DOCUMENT).hexdigest()
    path, document = tmp_path / "bundle.json", tmp_path / "contract.pdf"
    path.write_text(json.dumps(use["bundle"]))
    document.write_bytes(DOCUMENT)
    proved = auditor("prove", str(path), "--offline", "--log-key", keys["log_key"],
                     "--document", str(document))  # fmt: skip
    assert proved.returncode == 0, proved.stdout + proved.stderr
    assert "3. opening                ok" in proved.stdout
    cert = next(e for e in mine if e["leaf"]["type"] == "cert.issue")
    assert cert["opening"]["extra"]["serial"] == SERIAL
    # Bob's opening does not open Alice's leaf, given apart with --opening.
    other = tmp_path / "bob-opening.json"
    other.write_text(json.dumps(theirs[-1]["opening"]))
    public = tmp_path / "public.json"
    public.write_bytes((await _get(server, f"/log/proof?index={use['index']}"))[1])
    refused = auditor("prove", str(public), "--offline", "--log-key", keys["log_key"],
                      "--opening", str(other))  # fmt: skip
    assert refused.returncode == 1 and "step 3 (opening)" in refused.stderr

    # Pages: `limit` and `after`.
    first = await listing(alice, "?limit=1")
    assert [e["index"] for e in first["events"]] == [mine[0]["index"]]
    assert first["next_after"] == mine[0]["index"]
    rest = await listing(alice, f"?after={first['next_after']}&limit=500")
    assert [e["index"] for e in rest["events"]] == [e["index"] for e in mine[1:]]
    assert rest["next_after"] is None

    # No token, a garbage token, hostile parameters: 4xx problem+json.
    for headers, query, expected in (
        ({}, "", 401),
        ({"Authorization": "Bearer not-a-token"}, "", 401),
        (me(alice), "?after=-1", 400),
        (me(alice), "?limit=0", 400),
        (me(alice), "?limit=501", 400),
        (me(alice), "?after=%C2%B2", 400),
        (me(alice), f"?after={2**63 - 1}", 400),
    ):
        status, body, answer = await _get(server, f"/api/v1/me/log/events{query}", headers)
        assert status == expected, (query, body)
        assert answer["Content-Type"].startswith("application/problem+json")


async def test_auditor_export_has_every_opening_and_needs_the_auditor_credential(
    audit_server: Any, clock: FakeClock, tmp_path: Path
) -> None:
    server = await audit_server(full=True)
    owner = "9e8d7c6b-5a49-4382-a1f0-e9d8c7b6a5f4"
    await _signing_events(server, owner)
    await _close(server, clock)
    async with aiohttp.ClientSession() as http:
        staff = await staffed(server, http)  # on day 2: not in the export of day 1
        path = "/operator/api/v1/audit/log/exports/2026-03-01"
        # Not on the public listener; no token or a wrong one: 401; another role: 403.
        status, _, _ = await _get(server, path)
        assert status == 404
        for headers in ({}, {"Authorization": "Bearer wrong-auditor-token"}):
            async with http.get(staff.url + path, headers=headers) as r:
                body = await r.read()
                assert r.status == 401, body
                assert r.headers["Content-Type"].startswith("application/problem+json")
                assert SERIAL.encode() not in body
        status, body, _ = await auditor_get(staff, path, as_role="registration")
        assert status == 403 and SERIAL.encode() not in body
        status, full, answer = await auditor_get(staff, path)
        status_bad, body_bad, _ = await auditor_get(
            staff, "/operator/api/v1/audit/log/exports/2026-3-1"
        )
    assert status == 200 and answer["Cache-Control"] == "no-store"
    lines = full.splitlines()
    assert json.loads(lines[0])["contents"] == "full"
    opened = [json.loads(line) for line in lines[1:]]
    tag = await _owner_tag(server, owner)
    # The owner's two events, and what the service itself logged that day.
    assert len([o for o in opened if o["opening"]["owner"] == tag.hex()]) == 2
    assert SERIAL.encode() in full and hashlib.sha256(DOCUMENT).hexdigest().encode() in full
    keys = await get_json(server, "/log/keys")
    export = tmp_path / "2026-03-01.full.jsonl"
    export.write_bytes(full)
    result = auditor("verify", str(export), "--offline", "--log-key", keys["log_key"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "7. openings               ok" in result.stdout
    assert f"{len(opened)} openings match" in result.stdout
    # The same day's public export has the same leaves, without the openings.
    public = (await get_raw(server, "/log/exports/2026-03-01"))[1].splitlines()
    assert [json.loads(p) for p in public[1:]] == [o["leaf"] for o in opened]
    assert status_bad == 400, body_bad


# -- leaves logged before commitments (v1) ------------------------------------------


async def _as_if_logged_before_v2(server: TestServer) -> None:
    """Rewrite the sequenced leaves as the pre-v2 service wrote them (v1, no
    salt), and restart the log on them: a database from before migration 0006."""
    tags = TagMaker(server.app[HSM])
    async with server.app[DATABASE].transaction() as conn:
        rows = (
            await conn.execute(
                select(log_leaves, events).join(events, events.c.seq == log_leaves.c.event_seq)
            )
        ).mappings()
        for r in list(rows):
            event = EventRow.from_mapping(r)
            owner, credential = await tags.tags_for(event)
            v1 = build_v1_leaf(event, r["leaf_index"], r["sequenced_at"], owner, credential)
            await conn.execute(
                update(log_leaves)
                .where(log_leaves.c.leaf_index == r["leaf_index"])
                .values(leaf=v1.to_bytes(), leaf_hash=v1.leaf_hash(), salt=None)
            )
    await server.app[AUDIT_LOG].start()


async def test_v1_leaves_keep_verifying_and_stay_out_of_public_view(
    audit_server: Any, clock: FakeClock, tmp_path: Path
) -> None:
    server = await audit_server(full=True)
    base = str(server.make_url("")).rstrip("/")
    http = aiohttp.ClientSession()
    staff = await staffed(server, http)
    identity = person()
    try:
        alice = new_client(base, http)
        totp, _ = await enrolled(alice, identity=identity)
        assert alice.owner_id is not None
        alice_id = alice.owner_id
        await _v1_then_v2(server, clock, alice_id)
        # Two days later: a new session (TOTP runs on the test's own clock).
        await alice.login(identity["iin"], await totp.fresh_code(), "correct horse battery")
        token = alice.access_token
        await _v1_checks(server, staff, alice_id, token, tmp_path)
    finally:
        await http.close()


async def _v1_then_v2(server: TestServer, clock: FakeClock, alice_id: str) -> None:
    await _signing_events(server, alice_id)
    log: AuditLog = server.app[AUDIT_LOG]
    await log.sequence_pending()
    await _as_if_logged_before_v2(server)
    clock.advance(days=1)
    await log.close_due_days()  # day 1: v1 leaves
    await _signing_events(server, alice_id)
    await _close(server, clock)  # day 2: v2 leaves after the upgrade


async def _v1_checks(
    server: TestServer, staff: Staff, alice_id: str, token: str | None, tmp_path: Path
) -> None:
    log: AuditLog = server.app[AUDIT_LOG]
    keys = await get_json(server, "/log/keys")
    tag = (await _owner_tag(server, alice_id)).hex().encode()
    files: dict[str, Path] = {}
    for day in ("2026-03-01", "2026-03-02"):
        for name, fetch in (
            ("public", _get(server, f"/log/exports/{day}")),
            ("full", auditor_get(staff, f"/operator/api/v1/audit/log/exports/{day}")),
        ):
            status, body, _ = await fetch
            assert status == 200, body
            files[f"{day}.{name}"] = tmp_path / f"{day}.{name}.jsonl"
            files[f"{day}.{name}"].write_bytes(body)
    day1_public = files["2026-03-01.public"].read_bytes()
    assert tag not in day1_public and SERIAL.encode() not in day1_public
    assert all(b'"withheld"' in line for line in day1_public.splitlines()[1:])
    day1_full = files["2026-03-01.full"].read_bytes().splitlines()[1:]
    assert all(isinstance(parse_leaf(line), EventLeaf) for line in day1_full)
    assert SERIAL.encode() in b"".join(day1_full)
    for name in ("public", "full"):
        for previous in ("public", "full"):
            result = auditor("verify", str(files[f"2026-03-02.{name}"]), "--offline",
                             "--log-key", keys["log_key"],
                             "--previous", str(files[f"2026-03-01.{previous}"]))  # fmt: skip
            assert result.returncode == 0, result.stdout + result.stderr
    first = auditor("verify", str(files["2026-03-01.public"]), "--offline",
                    "--log-key", keys["log_key"])  # fmt: skip
    assert first.returncode == 0 and "withheld" in first.stdout, first.stdout + first.stderr

    # The owner gets their v1 leaves in the clear (no opening) with proofs.
    status, body, _ = await _get(
        server, "/api/v1/me/log/events", {"Authorization": f"Bearer {token}"}
    )
    assert status == 200, body
    mine = json.loads(body)["events"]
    old = [e for e in mine if e["leaf"]["v"] == 1]
    new = [e for e in mine if e["leaf"]["v"] == 2]
    assert old and new and all(e["opening"] is None for e in old)
    assert all(e["opening"] is not None for e in new)
    verifier = NoteVerifier.from_vkey(keys["log_key"])
    for event in mine:
        await verify_inclusion_bundle(json.dumps(event["bundle"]), verifier, None)
    # The public proof of a v1 leaf is its hash alone.
    _, body, _ = await _get(server, f"/log/proof?index={old[0]['index']}")
    assert json.loads(body)["leaf"] is None and tag not in body

    # Editing a v1 event is still exposed, in both exports.
    async with server.app[DATABASE].transaction() as conn:
        seq = (
            await conn.execute(
                select(log_leaves.c.event_seq).where(log_leaves.c.leaf_index == old[0]["index"])
            )
        ).scalar_one()
        await conn.execute(update(events).where(events.c.seq == seq).values(data={"x": 1}))
    for full in (False, True):
        with pytest.raises(TamperedLogError, match="2026-03-01"):
            await log.write_export(DAY1, tmp_path / "refused.jsonl", full=full)
        raw = tmp_path / f"raw-{full}.jsonl"
        raw.write_bytes(b"".join([line async for line in log.iter_export_lines(DAY1, full=full)]))
        bad = auditor("verify", str(raw), "--offline", "--log-key", keys["log_key"])
        assert bad.returncode == 1 and "day 2026-03-01" in bad.stderr, bad.stdout + bad.stderr
    # The owner is never handed content that does not match the log.
    status, body, _ = await _get(
        server, "/api/v1/me/log/events", {"Authorization": f"Bearer {token}"}
    )
    assert status == 500 and b"audit_log_tampered" in body
