"""Day exports: writer/reader round trip, offline verification, tamper
detection; full exports and their openings; v1 exports and the change of
format."""

from __future__ import annotations

import base64
import io
import json
import random
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from ac_support import DATA, ORIGIN, SampleLog, make_event, v1_fixture_signer

from audit_chain.checkpoint import Checkpoint, Ed25519NoteSigner, NoteVerifier, sign_checkpoint
from audit_chain.errors import ExportError, OpeningError, VerificationError
from audit_chain.export import (
    CONTENTS_FULL,
    DayExportHeader,
    DayExportReader,
    iter_day_export,
)
from audit_chain.leaf import (
    CommittedLeaf,
    DroppedLeaf,
    EventLeaf,
    OpenedLeaf,
    WithheldLeaf,
    parse_leaf,
)
from audit_chain.merkle import MerkleTree
from audit_chain.verify import verify_day_offline

D1, D2, D3 = date(2025, 3, 1), date(2025, 3, 2), date(2025, 3, 3)


@pytest.fixture
def log(tmp_path: Path) -> SampleLog:
    log = SampleLog(tmp_path)
    log.add_day(D1, 37)
    log.add_day(D2, 64, drop_every=5)
    log.add_day(D3, 0)
    return log


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def _write(path: Path, lines: list[bytes]) -> Path:
    out = path.with_name("tampered-" + path.name)
    out.write_bytes(b"".join(lines))
    return out


def _fails(path: Path, log: SampleLog | NoteVerifier, step: str, day: date) -> VerificationError:
    key = log if isinstance(log, NoteVerifier) else log.signer.verifier()
    with pytest.raises(VerificationError) as e:
        verify_day_offline(path, key)
    assert e.value.step_name == step, str(e.value)
    assert e.value.day == day.isoformat()
    assert day.isoformat() in str(e.value)
    assert e.value.code == f"verify.{step}"
    return e.value


# ------------------------------------------------------------------ round trip


def test_reader_round_trips_writer(log: SampleLog) -> None:
    day = log.days[1]
    with day.path.open("rb") as f:
        reader = DayExportReader(f)
        assert reader.header == day.header
        entries = list(reader.entries())
    assert [e.index for e in entries] == [e.index for e in day.entries]
    assert [e.leaf_hash for e in entries] == [e.leaf_hash() for e in day.entries]
    dropped = [e for e in entries if e.leaf is None]
    assert len(dropped) == 64 // 5
    assert entries[0].leaf == day.entries[0]


def test_every_day_verifies_and_chains(log: SampleLog) -> None:
    key = log.signer.verifier()
    r1 = verify_day_offline(log.days[0].path, key)
    assert r1.previous is None
    assert r1.leaf_count == 37
    assert r1.checkpoint.size == 37
    r2 = verify_day_offline(log.days[1].path, key, previous=log.days[0].path)
    assert r2.previous == r1.checkpoint
    assert r2.dropped_count == 64 // 5
    assert r2.checkpoint.root_hash == log.tree.root(101)
    r3 = verify_day_offline(log.days[2].path, key, previous=log.days[1].path)
    assert r3.leaf_count == 0
    assert r3.checkpoint.size == 101


def test_progress_callback_called(log: SampleLog) -> None:
    seen: list[tuple[int, int]] = []
    verify_day_offline(
        log.days[1].path, log.signer.verifier(), progress=lambda a, b: seen.append((a, b))
    )
    assert seen[-1] == (64, 64)


# ---------------------------------------------------------------- the writer


def test_writer_refuses_inconsistent_input(log: SampleLog) -> None:
    day = log.days[1]
    with pytest.raises(ExportError):
        list(iter_day_export(day.header, day.entries[:-1]))
    with pytest.raises(ExportError):
        list(iter_day_export(day.header, [*day.entries[1:], day.entries[0]]))
    edited = list(day.entries)
    first = edited[0]
    assert isinstance(first, CommittedLeaf)
    edited[0] = DroppedLeaf(first.index, bytes(32))
    with pytest.raises(ExportError):
        list(iter_day_export(day.header, edited))
    with pytest.raises(ExportError):
        DayExportHeader(D2, ORIGIN, log.days[0].note, (), day.note)  # wrong frontier
    with pytest.raises(ExportError):
        DayExportHeader(D2, "other/origin", log.days[0].note, day.header.frontier, day.note)


def test_reader_rejects_garbage() -> None:
    for data in [b"", b"{}\n", b"[1]\n", b"x" * 100]:
        with pytest.raises(ExportError):
            DayExportReader(io.BytesIO(data))


# ----------------------------------------------------------------- tampering


def _leaf_line(path: Path, n: int) -> tuple[list[bytes], dict[str, object]]:
    lines = _lines(path)
    return lines, json.loads(lines[n])


def _canonical(obj: dict[str, object]) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def test_edited_event_detected(log: SampleLog) -> None:
    path = log.days[0].path
    lines, obj = _leaf_line(path, 5)
    obj["type"] = "auth.failure" if obj["type"] != "auth.failure" else "key.create"
    obj.pop("document", None)
    lines[5] = _canonical(obj) + b"\n"
    _fails(_write(path, lines), log, "root", D1)


def test_edited_time_outside_day_detected(log: SampleLog) -> None:
    path = log.days[0].path
    lines, obj = _leaf_line(path, 3)
    obj["time"] = "2024-01-01T00:00:00.000000Z"
    lines[3] = _canonical(obj) + b"\n"
    err = _fails(_write(path, lines), log, "leaves", D1)
    assert "outside the day" in err.detail


def test_non_canonical_edit_detected(log: SampleLog) -> None:
    path = log.days[0].path
    lines = _lines(path)
    lines[2] = lines[2].replace(b'","', b'", "', 1)
    _fails(_write(path, lines), log, "leaves", D1)


def test_deleted_event_detected(log: SampleLog) -> None:
    path = log.days[0].path
    lines = _lines(path)
    del lines[10]
    _fails(_write(path, lines), log, "leaves", D1)
    lines = _lines(path)
    del lines[-1]  # the last one: only the count gives it away
    _fails(_write(path, lines), log, "leaves", D1)


def test_inserted_event_detected(log: SampleLog) -> None:
    path = log.days[0].path
    lines = _lines(path)
    lines.insert(4, lines[4])
    _fails(_write(path, lines), log, "leaves", D1)
    lines = _lines(path)
    extra = make_event(37, log.clock.bounds(D1)[0], random.Random(1)).leaf
    lines.append(extra.to_bytes() + b"\n")
    _fails(_write(path, lines), log, "leaves", D1)


def test_reordered_events_detected(log: SampleLog) -> None:
    path = log.days[0].path
    lines = _lines(path)
    lines[3], lines[4] = lines[4], lines[3]
    _fails(_write(path, lines), log, "leaves", D1)
    # Swap the content but keep the indices in order: the root gives it away.
    lines = _lines(path)
    a, b = json.loads(lines[3]), json.loads(lines[4])
    a["index"], b["index"] = b["index"], a["index"]
    lines[3], lines[4] = _canonical(b) + b"\n", _canonical(a) + b"\n"
    _fails(_write(path, lines), log, "root", D1)


def test_dropped_hash_altered_detected(log: SampleLog) -> None:
    path = log.days[1].path
    lines = _lines(path)
    n = next(i for i, line in enumerate(lines) if b'"dropped"' in line)
    obj = json.loads(lines[n])
    obj["dropped"] = "00" * 32
    lines[n] = _canonical(obj) + b"\n"
    _fails(_write(path, lines), log, "root", D2)


def _with_header(path: Path, **changes: object) -> Path:
    lines = _lines(path)
    header = json.loads(lines[0])
    header.update(changes)
    lines[0] = json.dumps(header, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    return _write(path, lines)


def test_checkpoint_signature_altered_detected(log: SampleLog) -> None:
    day = log.days[1]
    body, _, sig_text = day.note.rstrip("\n").rpartition(" ")
    blob = bytearray(base64.b64decode(sig_text))
    blob[20] ^= 0x01
    flipped = f"{body} {base64.b64encode(bytes(blob)).decode()}\n"
    _fails(_with_header(day.path, checkpoint=flipped), log, "checkpoint-signature", D2)


def test_checkpoint_replaced_detected(log: SampleLog) -> None:
    day = log.days[1]
    # A checkpoint of another size signed by the real key: header no longer adds up.
    _fails(_with_header(day.path, checkpoint=log.days[0].note), log, "export-header", D2)
    # A checkpoint for the edited content, signed by a key that is not the log's.
    forger = Ed25519NoteSigner.generate(ORIGIN)
    forged = sign_checkpoint(day.checkpoint, forger)
    _fails(_with_header(day.path, checkpoint=forged), log, "checkpoint-signature", D2)
    # A correctly signed checkpoint of the same size but another root.
    wrong = Checkpoint(ORIGIN, day.checkpoint.size, bytes(32))
    _fails(_with_header(day.path, checkpoint=sign_checkpoint(wrong, log.signer)), log, "root", D2)


def test_previous_checkpoint_and_frontier_tampering_detected(log: SampleLog) -> None:
    day = log.days[1]
    forger = Ed25519NoteSigner.generate(ORIGIN)
    forged = sign_checkpoint(log.days[0].checkpoint, forger)
    _fails(
        _with_header(day.path, previous={"checkpoint": forged, "size": 37}),
        log,
        "previous-checkpoint",
        D2,
    )
    frontier = [h.hex() for h in day.header.frontier]
    frontier[0] = "11" * 32
    _fails(_with_header(day.path, frontier=frontier), log, "frontier", D2)


def test_consistency_with_previous_day(log: SampleLog, tmp_path: Path) -> None:
    key = log.signer.verifier()
    # Day 3 is not the successor of day 1.
    with pytest.raises(VerificationError) as e:
        verify_day_offline(log.days[2].path, key, previous=log.days[0].path)
    assert e.value.step_name == "consistency"
    assert e.value.day == D3.isoformat()
    # A previous export from a forked log (same key, other content) is refused.
    fork = SampleLog(tmp_path / "fork", signer=log.signer, seed=99)
    (tmp_path / "fork").mkdir()
    fork.add_day(D1, 37)
    with pytest.raises(VerificationError) as e:
        verify_day_offline(log.days[1].path, key, previous=fork.days[0].path)
    assert e.value.step_name == "consistency"
    # A tampered previous export is reported under this day's consistency step.
    lines = _lines(log.days[0].path)
    del lines[3]
    bad_prev = _write(log.days[0].path, lines)
    with pytest.raises(VerificationError) as e:
        verify_day_offline(log.days[1].path, key, previous=bad_prev)
    assert e.value.step_name == "consistency"
    assert D1.isoformat() in str(e.value)


def test_large_gap_free_day_with_frontier_only(tmp_path: Path) -> None:
    # The auditor needs nothing of the earlier days but the frontier.
    log = SampleLog(tmp_path)
    log.add_day(D1, 1000)
    log.add_day(D2, 3)
    result = verify_day_offline(log.days[1].path, log.signer.verifier())
    assert result.start_frontier.size == 1000
    tree = MerkleTree.from_leaf_hashes(e.leaf_hash() for e in log.leaves)
    assert result.checkpoint.root_hash == tree.root()


def test_leaf_time_skew_tolerated(tmp_path: Path) -> None:
    log = SampleLog(tmp_path)
    start, _ = log.clock.bounds(D1)
    leaf = make_event(0, start - timedelta(minutes=2), random.Random(3)).leaf
    tree = MerkleTree.from_leaf_hashes([leaf.leaf_hash()])
    note = sign_checkpoint(Checkpoint(ORIGIN, 1, tree.root()), log.signer)
    header = DayExportHeader(D1, ORIGIN, None, (), note)
    path = tmp_path / "skew.jsonl"
    path.write_bytes(b"".join(iter_day_export(header, [leaf])))
    assert verify_day_offline(path, log.signer.verifier()).leaf_count == 1


# ------------------------------------------------- public and full exports, openings


def test_public_export_holds_no_private_field(log: SampleLog) -> None:
    day = log.days[1]
    public = day.path.read_bytes()
    assert json.loads(public.splitlines()[0])["contents"] == "public"
    opened = day.opened()
    assert opened
    for entry in opened:
        o = entry.opening
        for private in (o.owner_tag.hex(), o.salt.hex()):
            assert private.encode() not in public
        if o.document_hash is not None:
            assert o.document_hash.hex().encode() not in public
    # Each line is a bare public leaf: exactly index, type, time, commitment, v.
    for line in public.splitlines()[1:]:
        obj = json.loads(line)
        assert set(obj) in ({"commitment", "index", "time", "type", "v"}, {"dropped", "index"})


def test_full_export_verifies_every_opening(log: SampleLog) -> None:
    key = log.signer.verifier()
    day = log.days[1]
    public = verify_day_offline(day.path, key)
    full = verify_day_offline(day.full_path, key, previous=log.days[0].path)
    assert not public.full and public.opened_count == 0
    assert full.full and full.opened_count == len(day.opened()) == 64 - 64 // 5
    assert full.checkpoint == public.checkpoint
    assert full.end_frontier.hashes == public.end_frontier.hashes
    # The public export of the next day chains onto the full one and vice versa.
    verify_day_offline(log.days[2].path, key, previous=day.full_path)
    with day.full_path.open("rb") as f:
        entries = list(DayExportReader(f).entries())
    assert [e.leaf_hash for e in entries] == [e.leaf_hash() for e in day.entries]
    assert all(e.opening is not None for e in entries if isinstance(e.leaf, CommittedLeaf))


def _full_line(path: Path, n: int) -> tuple[list[bytes], dict[str, Any]]:
    lines = _lines(path)
    return lines, json.loads(lines[n])


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("salt", "00" * 32),
        ("owner", "11" * 32),
        ("extra", {"attempt": 99}),
        ("credential", "22" * 16),
    ],
)
def test_tampered_opening_is_named_by_the_verifier(
    log: SampleLog, field: str, value: object
) -> None:
    day = log.days[0]
    lines, obj = _full_line(day.full_path, 6)
    obj["opening"][field] = value
    lines[6] = _canonical(obj) + b"\n"
    err = _fails(_write(day.full_path, lines), log, "openings", D1)
    assert err.step == 7
    # lines[6] is line 7 of the file: the header is line 1.
    assert f"line 7: the opening of leaf {obj['leaf']['index']} does not match" in err.detail


def test_full_export_without_an_opening_or_with_withheld_content_fails(log: SampleLog) -> None:
    day = log.days[0]
    lines, obj = _full_line(day.full_path, 4)
    lines[4] = _canonical(obj["leaf"]) + b"\n"  # the bare public leaf
    err = _fails(_write(day.full_path, lines), log, "openings", D1)
    assert "line 5" in err.detail and "has no opening" in err.detail
    lines, obj = _full_line(day.full_path, 4)
    h = CommittedLeaf(
        obj["leaf"]["index"],
        obj["leaf"]["type"],
        parse_leaf(_canonical(obj["leaf"])).time,
        bytes.fromhex(obj["leaf"]["commitment"]),
    ).leaf_hash()
    lines[4] = _canonical({"index": obj["leaf"]["index"], "withheld": h.hex()}) + b"\n"
    err = _fails(_write(day.full_path, lines), log, "openings", D1)
    assert "withheld from a full export" in err.detail


def test_an_edited_public_part_fails_at_the_root_even_with_openings(log: SampleLog) -> None:
    day = log.days[0]
    lines, obj = _full_line(day.full_path, 3)
    obj["leaf"]["time"] = obj["leaf"]["time"].replace(".", ".9", 1)[:-2] + "Z"
    lines[3] = _canonical(obj) + b"\n"
    _fails(_write(day.full_path, lines), log, "root", D1)


def test_public_export_refuses_an_opening(log: SampleLog) -> None:
    day = log.days[0]
    full_lines = _lines(day.full_path)
    lines = _lines(day.path)
    lines[2] = full_lines[2]
    err = _fails(_write(day.path, lines), log, "leaves", D1)
    assert "public export carries no opening" in err.detail


def test_writer_keeps_openings_out_of_public_exports_and_withholds_nothing_in_full(
    log: SampleLog,
) -> None:
    day = log.days[0]
    full_header = DayExportHeader(D1, ORIGIN, None, (), day.note, contents=CONTENTS_FULL)
    opened = day.opened()[0]
    with pytest.raises(ExportError, match="public export"):
        list(iter_day_export(day.header, [opened]))
    with pytest.raises(ExportError, match="needs the leaf's opening"):
        list(iter_day_export(full_header, [opened.leaf]))
    with pytest.raises(ExportError, match="withholds no content"):
        list(iter_day_export(full_header, [WithheldLeaf(0, opened.leaf_hash())]))
    with pytest.raises(ExportError):
        DayExportHeader(D1, ORIGIN, None, (), day.note, contents="everything")


# ------------------------------------------------------- v1 exports, change of format


def _v1_key() -> NoteVerifier:
    return NoteVerifier.from_vkey((DATA / "v1-log.vkey").read_text().strip())


def test_v1_exports_made_before_commitments_still_verify() -> None:
    key = _v1_key()
    first = verify_day_offline(DATA / "v1-2025-03-01.jsonl", key)
    second = verify_day_offline(
        DATA / "v1-2025-03-02.jsonl", key, previous=DATA / "v1-2025-03-01.jsonl"
    )
    assert first.leaf_count == 6 and not first.full
    assert second.leaf_count == 5 and second.dropped_count == 1
    with (DATA / "v1-2025-03-01.jsonl").open("rb") as f:
        reader = DayExportReader(f)
        assert reader.legacy
        assert all(isinstance(e.leaf, EventLeaf) for e in reader.entries())


def test_v1_export_tampering_still_detected(tmp_path: Path) -> None:
    lines = _lines(DATA / "v1-2025-03-01.jsonl")
    assert b'"cert.issue"' in lines[2]
    lines[2] = lines[2].replace(b"cert.issue", b"key.destroy")
    path = tmp_path / "v1-tampered.jsonl"
    path.write_bytes(b"".join(lines))
    _fails(path, _v1_key(), "root", D1)
    # A v1-format export cannot hold a v2 leaf or a withheld entry.
    lines = _lines(DATA / "v1-2025-03-01.jsonl")
    leaf = parse_leaf(lines[1].rstrip(b"\n"))
    lines[1] = _canonical({"index": leaf.index, "withheld": leaf.leaf_hash().hex()}) + b"\n"
    path.write_bytes(b"".join(lines))
    err = _fails(path, _v1_key(), "leaves", D1)
    assert "withholds nothing" in err.detail


def test_the_log_continues_in_v2_after_v1_days(tmp_path: Path) -> None:
    # The fixture's log goes on: a day of the transition (v1 and v2 leaves) and
    # a v2 day, chained to the anchored v1 days by the consistency step.
    hashes: list[bytes] = []
    for name in ("v1-2025-03-01.jsonl", "v1-2025-03-02.jsonl"):
        with (DATA / name).open("rb") as f:
            reader = DayExportReader(f)
            hashes.extend(e.leaf_hash for e in reader.entries())
            note = reader.header.checkpoint
    log = SampleLog(
        tmp_path,
        signer=v1_fixture_signer(),
        tree=MerkleTree.from_leaf_hashes(hashes),
        start_note=note,
    )
    key = log.signer.verifier()
    assert key == _v1_key()
    transition = log.add_day(D3, 12, v1_every=3)
    public = verify_day_offline(transition.path, key, previous=DATA / "v1-2025-03-02.jsonl")
    full = verify_day_offline(transition.full_path, key, previous=DATA / "v1-2025-03-02.jsonl")
    assert public.withheld_count == 4 and public.opened_count == 0
    assert full.withheld_count == 0 and full.opened_count == 8
    # In the public export a v1 leaf is its hash; in the full one, in the clear.
    public_lines = _lines(transition.path)[1:]
    full_lines = _lines(transition.full_path)[1:]
    assert b'"withheld"' in public_lines[2] and b'"owner"' not in public_lines[2]
    assert isinstance(parse_leaf(full_lines[2].rstrip(b"\n")), EventLeaf)
    after = log.add_day(date(2025, 3, 4), 5)
    verify_day_offline(after.path, key, previous=transition.path)


def test_opened_leaf_refuses_a_mismatch_at_construction(log: SampleLog) -> None:
    a, b = log.days[0].opened()[:2]
    with pytest.raises(OpeningError):
        OpenedLeaf(a.leaf, b.opening)
