"""Sequencing, owner tags, day checkpoints, exports and tampering, over HTTP on
both databases, with the clock moved instead of waiting for days."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, func, select, update

from audit_chain import (
    Checkpoint,
    CommittedLeaf,
    Ed25519NoteSigner,
    NoteVerifier,
    parse_leaf,
    root_from_leaf_hashes,
    sign_checkpoint,
)
from cloudsign.accounts.tables import owners
from cloudsign.appkeys import AUDIT_LOG, DATABASE, HSM
from cloudsign.audit import AuditLog, TamperedLogError
from cloudsign.audit.tables import log_checkpoints, log_leaves
from cloudsign.ca.tables import certificates
from cloudsign.events import EventType, append_event
from cloudsign.storage.schema import events
from tests.audit.conftest import START, FakeClock
from tests.audit.support import append_many, auditor, get_json, get_raw

DAY1 = date(2026, 3, 1)
DAY2 = date(2026, 3, 2)


async def _leaves(app: Any) -> list[Any]:
    async with app[DATABASE].read() as conn:
        return list(
            (await conn.execute(select(log_leaves).order_by(log_leaves.c.leaf_index))).mappings()
        )


async def test_concurrent_appends_sequence_contiguously(audit_server: Any) -> None:
    first = await audit_server()
    second = await audit_server()  # a second "process" on the same database
    logs: list[AuditLog] = [first.app[AUDIT_LOG], second.app[AUDIT_LOG]]
    stop = asyncio.Event()

    async def appender(k: int) -> None:
        for i in range(15):
            async with first.app[DATABASE].transaction() as conn:
                await append_event(
                    conn, EventType.KEY_USE, owner_id=f"o{k}", data={"i": i}, at=datetime.now(UTC)
                )
            await asyncio.sleep(0)

    async def failing() -> None:
        # Rolled-back transactions leave gaps in seq.
        for _ in range(5):
            try:
                async with first.app[DATABASE].transaction() as conn:
                    await append_event(
                        conn, EventType.AUTH_FAILURE, owner_id="x", at=datetime.now(UTC)
                    )
                    raise RuntimeError("rolled back")
            except RuntimeError:
                pass

    async def sequencer(log: AuditLog) -> None:
        while not stop.is_set():
            await log.sequence_pending()
            await asyncio.sleep(0.005)

    seqs = [asyncio.create_task(sequencer(log)) for log in logs]
    await asyncio.gather(*(appender(k) for k in range(12)), failing())
    stop.set()
    await asyncio.gather(*seqs)
    for log in logs:
        await log.sequence_pending()

    rows = await _leaves(first.app)
    assert [r["leaf_index"] for r in rows] == list(range(12 * 15))
    async with first.app[DATABASE].read() as conn:
        event_seqs = sorted(s for (s,) in await conn.execute(select(events.c.seq)))
    assert sorted(r["event_seq"] for r in rows) == event_seqs
    times = [r["sequenced_at"] for r in rows]
    assert times == sorted(times)
    for r in rows:
        leaf = parse_leaf(r["leaf"])
        assert leaf.index == r["leaf_index"] and leaf.leaf_hash() == r["leaf_hash"]
    expected_root = root_from_leaf_hashes(bytes(r["leaf_hash"]) for r in rows)
    for log in logs:
        await log.refresh()
        assert log.tree.root() == expected_root


async def test_owner_id_never_in_leaves(audit_server: Any) -> None:
    server = await audit_server()
    owner = "5d1c9a7e-3b8f-4c2e-9a1d-0f6b2c4e8a11"
    credential = "c2a1f0e4-9d8b-4c7a-8e6f-1a2b3c4d5e6f"
    async with server.app[DATABASE].transaction() as conn:
        await append_event(
            conn,
            EventType.KEY_CREATE,
            owner_id=owner,
            credential_id=credential,
            at=datetime.now(UTC),
        )
        await append_event(
            conn,
            EventType.CONSENT_RECORD,
            owner_id=owner,
            data={"note": f"by {owner}"},
            at=datetime.now(UTC),
        )
        await append_event(conn, EventType.AUTH_FAILURE, owner_id=None, at=datetime.now(UTC))
    log: AuditLog = server.app[AUDIT_LOG]
    await log.sequence_pending()
    rows = await _leaves(server.app)
    assert len(rows) == 3
    tag = await server.app[HSM].hmac_sha256("audit-owner", owner.encode())
    for r in rows:
        # The public leaf: no id, and not even the tag (it is in the commitment).
        assert owner.encode() not in r["leaf"] and credential.encode() not in r["leaf"]
        assert tag.hex().encode() not in r["leaf"]
        assert isinstance(parse_leaf(r["leaf"]), CommittedLeaf)
    # The openings (the owner's view) carry the tags, never the ids.
    mine = await log.owner_events(owner)
    assert [e.index for e in mine] == [0, 1]
    openings = [e.opening for e in mine]
    assert all(o is not None and o.owner_tag == tag for o in openings)
    assert openings[0] is not None and openings[0].credential_tag is not None
    assert openings[1] is not None and openings[1].extra["note"] == "by (owner)"
    for o in openings:
        assert o is not None and owner.encode() not in o.to_bytes()
    assert await log.owner_events("nobody") == []


async def test_days_close_into_signed_checkpoints_exactly_once(
    audit_server: Any, clock: FakeClock
) -> None:
    a = await audit_server()
    b = await audit_server()
    await append_many(a, 10)
    await a.app[AUDIT_LOG].sequence_pending()
    clock.advance(days=2)  # DAY1 with events, DAY2 without
    await append_many(a, 3)
    closed = await asyncio.gather(
        a.app[AUDIT_LOG].close_due_days(), b.app[AUDIT_LOG].close_due_days()
    )
    assert sorted(c.day for batch in closed for c in batch) == [DAY1, DAY2]
    assert await a.app[AUDIT_LOG].close_due_days() == []

    keys = await get_json(a, "/log/keys")
    verifier = NoteVerifier.from_vkey(keys["log_key"])
    cp1 = await get_json(a, "/log/checkpoints/2026-03-01")
    cp2 = await get_json(b, "/log/checkpoints/2026-03-02")
    latest = await get_json(b, "/log/checkpoint")
    assert latest == cp2
    one = verifier.open_checkpoint(cp1["checkpoint"], origin=keys["origin"])
    two = verifier.open_checkpoint(cp2["checkpoint"], origin=keys["origin"])
    assert one.size == two.size == 10  # the empty day keeps the size; later events go to DAY3
    assert one.root_hash.hex() == cp1["root"]

    # Later events are stamped after the close, never into a closed day.
    await b.app[AUDIT_LOG].sequence_pending()
    rows = await _leaves(a.app)
    assert len(rows) == 13
    assert all(r["sequenced_at"] >= START + timedelta(days=2) for r in rows[10:])
    consistency = await get_json(a, "/log/consistency?first=3&second=10")
    assert len(consistency["proof"]) > 0


@pytest.mark.parametrize(
    "path",
    [
        "/log/checkpoints/2026-3-1",
        "/log/anchors/yesterday",
        "/log/proof",
        "/log/proof?index=-1",
        "/log/proof?leaf_hash=zz",
        "/log/consistency?first=5&second=2",
        "/log/exports/2026-13-01",
    ],
)
async def test_bad_parameters_are_400_problem_json(audit_server: Any, path: str) -> None:
    server = await audit_server()
    status, body, content_type = await get_raw(server, path)
    assert status == 400, body
    assert content_type == "application/problem+json"


async def test_unknown_day_and_unclosed_leaf_are_404(audit_server: Any) -> None:
    server = await audit_server()
    await append_many(server, 2)
    await server.app[AUDIT_LOG].sequence_pending()
    assert (await get_raw(server, "/log/checkpoints/2026-03-01"))[0] == 404
    status, body, _ = await get_raw(server, "/log/proof?index=0")
    assert status == 404 and b"not_yet_checkpointed" in body


# -- tampering -----------------------------------------------------------------


async def _two_days(server: Any, clock: FakeClock) -> None:
    log: AuditLog = server.app[AUDIT_LOG]
    await append_many(server, 6, owner="day1")
    await log.sequence_pending()
    clock.advance(days=1)
    await log.close_due_days()
    await append_many(server, 6, owner="day2")
    await log.sequence_pending()
    clock.advance(days=1)
    await log.close_due_days()


async def _tamper(app: Any, kind: str) -> None:
    async with app[DATABASE].transaction() as conn:
        rows = list(
            (
                await conn.execute(
                    select(log_leaves).where(log_leaves.c.leaf_index >= 6).order_by("leaf_index")
                )
            ).mappings()
        )
        victim = rows[2]
        if kind == "edit-leaf":
            edited = victim["leaf"].replace(b"key.create", b"key.destroy")
            await conn.execute(
                update(log_leaves)
                .where(log_leaves.c.leaf_index == victim["leaf_index"])
                .values(leaf=edited)
            )
        elif kind == "delete-leaf":
            await conn.execute(
                delete(log_leaves).where(log_leaves.c.leaf_index == victim["leaf_index"])
            )
        elif kind == "insert-leaf":
            # Make room at index 8 and insert an extra copy there.
            for r in reversed(rows[2:]):
                await conn.execute(
                    update(log_leaves)
                    .where(log_leaves.c.leaf_index == r["leaf_index"])
                    .values(leaf_index=r["leaf_index"] + 1)
                )
            extra = await conn.execute(
                events.insert().values(
                    event_type="key.use",
                    occurred_at=datetime.now(UTC),
                    owner_id="intruder",
                    data={},
                )
            )
            await conn.execute(
                log_leaves.insert().values(
                    leaf_index=victim["leaf_index"],
                    event_seq=extra.inserted_primary_key[0],
                    leaf=victim["leaf"],
                    leaf_hash=victim["leaf_hash"],
                    sequenced_at=victim["sequenced_at"],
                )
            )
        elif kind == "reorder-leaves":
            a, b = rows[1], rows[2]
            await conn.execute(
                update(log_leaves)
                .where(log_leaves.c.leaf_index == a["leaf_index"])
                .values(leaf_index=-1)
            )
            await conn.execute(
                update(log_leaves)
                .where(log_leaves.c.leaf_index == b["leaf_index"])
                .values(leaf_index=a["leaf_index"])
            )
            await conn.execute(
                update(log_leaves)
                .where(log_leaves.c.leaf_index == -1)
                .values(leaf_index=b["leaf_index"])
            )
        elif kind == "edit-event":
            await conn.execute(
                update(events)
                .where(events.c.seq == victim["event_seq"])
                .values(event_type="key.destroy")
            )
        elif kind == "edit-event-data":
            await conn.execute(
                update(events).where(events.c.seq == victim["event_seq"]).values(data={"n": 999})
            )
        elif kind == "edit-salt":
            await conn.execute(
                update(log_leaves)
                .where(log_leaves.c.leaf_index == victim["leaf_index"])
                .values(salt=bytes(32))
            )
        elif kind == "delete-event":
            await conn.execute(delete(events).where(events.c.seq == victim["event_seq"]))
        elif kind == "reorder-events":
            a, b = rows[1], rows[2]
            await conn.execute(
                update(log_leaves)
                .where(log_leaves.c.leaf_index == a["leaf_index"])
                .values(event_seq=-1)
            )
            await conn.execute(
                update(log_leaves)
                .where(log_leaves.c.leaf_index == b["leaf_index"])
                .values(event_seq=a["event_seq"])
            )
            await conn.execute(
                update(log_leaves)
                .where(log_leaves.c.leaf_index == a["leaf_index"])
                .values(event_seq=b["event_seq"])
            )
        elif kind == "replace-checkpoint":
            forged = Ed25519NoteSigner.generate("cloudsign.test/audit-log")
            cp = Checkpoint("cloudsign.test/audit-log", 12, hashlib.sha256(b"x").digest())
            await conn.execute(
                update(log_checkpoints)
                .where(log_checkpoints.c.day == DAY2)
                .values(note=sign_checkpoint(cp, forged))
            )
        else:  # pragma: no cover
            raise AssertionError(kind)


TAMPERING = [
    "edit-leaf",
    "delete-leaf",
    "insert-leaf",
    "reorder-leaves",
    "edit-event",
    "edit-event-data",
    "edit-salt",
    "delete-event",
    "reorder-events",
    "replace-checkpoint",
]
#: The auditor's full export re-derives every opening too: the edits of an
#: event or a salt, the leaf edit and an insertion are checked through it as well.
FULL_TAMPERING = ["edit-leaf", "insert-leaf", "edit-event", "edit-event-data", "edit-salt"]


@pytest.mark.parametrize(
    ("kind", "full"),
    [(k, False) for k in TAMPERING] + [(k, True) for k in FULL_TAMPERING],
)
async def test_tampering_is_detected_and_names_the_day(
    audit_server: Any, clock: FakeClock, tmp_path: Path, kind: str, full: bool
) -> None:
    server = await audit_server()
    await _two_days(server, clock)
    keys = await get_json(server, "/log/keys")
    day1 = tmp_path / "2026-03-01.jsonl"
    day1.write_bytes((await get_raw(server, "/log/exports/2026-03-01"))[1])
    good = tmp_path / "good.jsonl"
    good.write_bytes((await get_raw(server, "/log/exports/2026-03-02"))[1])
    ok = auditor("verify", str(good), "--offline", "--log-key", keys["log_key"],
                 "--previous", str(day1))  # fmt: skip
    assert ok.returncode == 0, ok.stderr

    await _tamper(server.app, kind)
    log: AuditLog = server.app[AUDIT_LOG]
    if kind != "replace-checkpoint":
        # The service refuses to publish a log that does not rebuild its signed root.
        if not full:
            status, body, _ = await get_raw(server, "/log/exports/2026-03-02")
            assert status == 500 and b"2026-03-02" in body, body
        with pytest.raises(TamperedLogError, match="2026-03-02"):
            await log.write_export(DAY2, tmp_path / "refused.jsonl", full=full)
    # What a compromised service would publish: the auditor names the day.
    raw = tmp_path / "raw.jsonl"
    raw.write_bytes(b"".join([line async for line in log.iter_export_lines(DAY2, full=full)]))
    bad = auditor("verify", str(raw), "--offline", "--log-key", keys["log_key"],
                  "--previous", str(day1))  # fmt: skip
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "day 2026-03-02" in bad.stderr, bad.stderr
    # The untouched day still verifies.
    assert auditor("verify", str(day1), "--offline", "--log-key", keys["log_key"]).returncode == 0


async def test_retention_drops_contents_but_keeps_proofs(
    audit_server: Any, clock: FakeClock, tmp_path: Path
) -> None:
    server = await audit_server()
    db = server.app[DATABASE]
    expired = clock.now - timedelta(days=400)
    async with db.transaction() as conn:
        for owner, not_after in (("gone", expired), ("active", clock.now + timedelta(days=9))):
            await conn.execute(
                owners.insert().values(
                    id=owner, kind="person", iin="900101300000", surname="S", given_name="G",
                    full_name="S G", email="a@b.kz", created_at=expired - timedelta(days=365),
                    argon2_salt=bytes(32), argon2_time_cost=1, argon2_memory_kib=8192,
                    argon2_parallelism=1, status="deleted" if owner == "gone" else "active",
                )
            )  # fmt: skip
            await conn.execute(
                certificates.insert().values(
                    serial=owner, owner_id=owner, subject="s", issuer="i", der=b"x",
                    not_before=not_after - timedelta(days=365), not_after=not_after,
                    issued_at=not_after - timedelta(days=365),
                )
            )  # fmt: skip
        for owner in ("gone", "active", "gone"):
            await append_event(conn, EventType.KEY_CREATE, owner_id=owner, at=expired)
    log: AuditLog = server.app[AUDIT_LOG]
    await log.sequence_pending()
    clock.advance(days=1)
    await log.close_due_days()
    assert await log.apply_retention() == 2
    assert await log.apply_retention() == 0
    rows = await _leaves(server.app)
    assert [r["leaf"] is None for r in rows] == [True, False, True]
    # The salt goes with the content: those commitments can never be opened again.
    assert [r["salt"] is None for r in rows] == [True, False, True]
    gone = await log.owner_events("gone")
    assert [(e.leaf, e.opening) for e in gone] == [(None, None), (None, None)]
    assert all(e.bundle is not None and e.bundle.leaf is None for e in gone)

    keys = await get_json(server, "/log/keys")
    export = tmp_path / "day.jsonl"
    export.write_bytes((await get_raw(server, "/log/exports/2026-03-01"))[1])
    assert b'"dropped"' in export.read_bytes()
    result = auditor("verify", str(export), "--offline", "--log-key", keys["log_key"])
    assert result.returncode == 0, result.stderr
    assert "2 dropped" in result.stdout
    full = tmp_path / "day.full.jsonl"
    full.write_bytes(b"".join([line async for line in log.iter_export_lines(DAY1, full=True)]))
    result = auditor("verify", str(full), "--offline", "--log-key", keys["log_key"])
    assert result.returncode == 0, result.stderr
    assert "2 dropped" in result.stdout and "1 openings match" in result.stdout
    bundle = tmp_path / "bundle.json"
    status, body, _ = await get_raw(server, "/log/proof?index=0")
    assert status == 200
    bundle.write_bytes(body)
    proved = auditor("prove", str(bundle), "--offline", "--log-key", keys["log_key"])
    assert proved.returncode == 0, proved.stderr
    async with db.read() as conn:
        assert (await conn.execute(select(func.count()).select_from(events))).scalar() == 3
