"""The auditor CLI end to end: exports and bundles against a real anvil."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from ac_support import DATA, SampleLog, document_of

from audit_chain.anvil import AnvilProcess, free_port, rpc_call
from audit_chain.bundle import InclusionBundle, build_inclusion_bundle
from audit_chain.cli import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, main
from audit_chain.errors import VerificationError
from audit_chain.ethereum import AnchorClient, SoftwareSecp256k1Signer
from audit_chain.leaf import CommittedLeaf
from audit_chain.verify import ProvenEvent, verify_inclusion_bundle

D1, D2, D3 = date(2025, 3, 1), date(2025, 3, 2), date(2025, 3, 3)


@pytest.fixture
async def anchored(
    anvil: AnvilProcess, owner_signer: SoftwareSecp256k1Signer, tmp_path: Path
) -> tuple[SampleLog, str]:
    log = SampleLog(tmp_path)
    log.add_day(D1, 40)
    log.add_day(D2, 25, drop_every=4)
    log.add_day(D3, 10)
    async with await AnchorClient.deploy(anvil.rpc_url, owner_signer) as client:
        for day in log.days[:2]:  # D3 deliberately left unanchored
            await client.anchor(day.day, day.checkpoint.root_hash, day.checkpoint.size)
        rpc_call(anvil.rpc_url, "anvil_mine", [hex(12)])
        return log, client.address


def _run(anvil: AnvilProcess, log: SampleLog, address: str, *args: str) -> int:
    return main(
        [
            *args,
            "--rpc",
            anvil.rpc_url,
            "--contract",
            address,
            "--log-key",
            log.signer.verifier().vkey,
        ]
    )


def test_verify_day_ok(
    anvil: AnvilProcess, anchored: tuple[SampleLog, str], capsys: pytest.CaptureFixture[str]
) -> None:
    log, address = anchored
    code = _run(
        anvil,
        log,
        address,
        "verify",
        str(log.days[1].path),
        "--previous",
        str(log.days[0].path),
        "--min-confirmations",
        "5",
    )
    out = capsys.readouterr()
    assert code == EXIT_OK, out.err
    assert "day 2025-03-02: VERIFIED" in out.out
    assert "10. confirmations" in out.out
    assert "7. openings" in out.out and "skipped" in out.out
    assert "anchored in block" in out.out


def test_verify_fails_naming_step_and_day(
    anvil: AnvilProcess, anchored: tuple[SampleLog, str], capsys: pytest.CaptureFixture[str]
) -> None:
    log, address = anchored
    # Not deep enough.
    assert (
        _run(anvil, log, address, "verify", str(log.days[0].path), "--min-confirmations", "100")
        == EXIT_FAILED
    )
    err = capsys.readouterr().err
    assert "day 2025-03-01" in err
    assert "step 10 (confirmations)" in err
    # Not anchored at all.
    assert _run(anvil, log, address, "verify", str(log.days[2].path)) == EXIT_FAILED
    err = capsys.readouterr().err
    assert "day 2025-03-03" in err
    assert "step 9 (anchor)" in err
    # Tampered export.
    lines = log.days[0].path.read_bytes().splitlines(keepends=True)
    del lines[7]
    bad = log.days[0].path.with_name("bad.jsonl")
    bad.write_bytes(b"".join(lines))
    assert _run(anvil, log, address, "verify", str(bad)) == EXIT_FAILED
    err = capsys.readouterr().err
    assert "day 2025-03-01" in err
    assert "step 5 (leaves)" in err


def test_anchor_of_other_root_detected(
    anvil: AnvilProcess,
    owner_signer: SoftwareSecp256k1Signer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    log = SampleLog(tmp_path)
    day = log.add_day(D1, 5)

    async def anchor_wrong() -> str:
        async with await AnchorClient.deploy(anvil.rpc_url, owner_signer) as client:
            await client.anchor(D1, hashlib.sha256(b"not it").digest(), day.checkpoint.size)
            return client.address

    address = asyncio.run(anchor_wrong())
    code = _run(anvil, log, address, "verify", str(day.path), "--min-confirmations", "1")
    assert code == EXIT_FAILED
    assert "step 9 (anchor)" in capsys.readouterr().err


def test_verify_unreachable_chain_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = SampleLog(tmp_path)
    day = log.add_day(D1, 3)
    code = main(
        [
            "verify",
            str(day.path),
            "--rpc",
            f"http://127.0.0.1:{free_port()}",
            "--contract",
            "0x" + "11" * 20,
            "--log-key",
            log.signer.verifier().vkey,
        ]
    )
    assert code == EXIT_UNREACHABLE
    assert "unreachable" in capsys.readouterr().err


def test_verify_offline_and_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = SampleLog(tmp_path)
    day = log.add_day(D1, 3)
    key_file = tmp_path / "log.vkey"
    key_file.write_text(log.signer.verifier().vkey + "\n")
    assert main(["verify", str(day.path), "--offline", "--log-key", str(key_file)]) == EXIT_OK
    assert "--offline" in capsys.readouterr().out
    assert main(["verify", str(day.path), "--log-key", str(key_file)]) == EXIT_USAGE
    assert main(["verify", str(day.path), "--offline", "--log-key", "garbage"]) == EXIT_USAGE
    assert (
        main(["verify", str(tmp_path / "missing"), "--offline", "--log-key", str(key_file)])
        == EXIT_FAILED
    )


def test_prove_event_inclusion(
    anvil: AnvilProcess, anchored: tuple[SampleLog, str], tmp_path: Path
) -> None:
    log, address = anchored
    day = log.days[1]
    entry = day.entries[2]
    assert isinstance(entry, CommittedLeaf)
    bundle = build_inclusion_bundle(
        log.tree, entry.index, day.checkpoint.size, day.day, day.note, leaf=entry
    )
    assert InclusionBundle.from_json(bundle.to_json()) == bundle
    path = tmp_path / "bundle.json"
    path.write_text(bundle.to_json())

    async def check() -> ProvenEvent:
        async with AnchorClient(anvil.rpc_url, address) as client:
            return await verify_inclusion_bundle(
                bundle.to_json(), log.signer.verifier(), client, min_confirmations=3
            )

    proven = asyncio.run(check())
    assert proven.index == entry.index
    assert proven.anchor is not None

    # The same through the CLI, in a separate process (python -m audit_chain).
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "audit_chain",
            "prove",
            str(path),
            "--rpc",
            anvil.rpc_url,
            "--contract",
            address,
            "--log-key",
            log.signer.verifier().vkey,
            "--min-confirmations",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "PROVEN" in result.stdout

    # A tampered bundle fails, naming the step and the day.
    obj = json.loads(bundle.to_json())
    obj["index"] = obj["index"] + 1
    obj["leaf"]["index"] = obj["index"]
    obj["leaf_hash"] = dataclasses.replace(entry, index=obj["index"]).leaf_hash().hex()
    path.write_text(json.dumps(obj))
    code = main(
        [
            "prove",
            str(path),
            "--rpc",
            anvil.rpc_url,
            "--contract",
            address,
            "--log-key",
            log.signer.verifier().vkey,
        ]
    )
    assert code == EXIT_FAILED


async def test_prove_with_document(
    anvil: AnvilProcess, anchored: tuple[SampleLog, str], tmp_path: Path
) -> None:
    log, address = anchored
    day = log.days[0]
    use = next(e for e in day.opened() if e.opening.document_hash is not None)
    public = build_inclusion_bundle(
        log.tree, use.index, day.checkpoint.size, day.day, day.note, use.leaf
    )
    owners = build_inclusion_bundle(
        log.tree, use.index, day.checkpoint.size, day.day, day.note, use.leaf, opening=use.opening
    )
    document = document_of(use.index)
    key = log.signer.verifier()
    async with AnchorClient(anvil.rpc_url, address) as client:
        proven = await verify_inclusion_bundle(
            owners, key, client, min_confirmations=1, document=document
        )
        assert proven.opening == use.opening
        # The same with the opening held apart from the public bundle.
        await verify_inclusion_bundle(
            public, key, client, min_confirmations=1, document=document, opening=use.opening
        )
        with pytest.raises(VerificationError) as e:
            await verify_inclusion_bundle(
                owners, key, client, min_confirmations=1, document=b"forged"
            )
        assert e.value.step_name == "document" and e.value.step == 6
        assert e.value.day == day.day.isoformat()
        # A public bundle alone cannot match a document: the digest is committed.
        with pytest.raises(VerificationError) as e:
            await verify_inclusion_bundle(
                public, key, client, min_confirmations=1, document=document
            )
        assert e.value.step_name == "document" and "opening" in e.value.detail


def _prove(log: SampleLog, bundle: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "audit_chain", "prove", str(bundle), "--offline",
         "--log-key", log.signer.verifier().vkey, *extra],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_prove_checks_an_opening_against_the_leaf(tmp_path: Path) -> None:
    log = SampleLog(tmp_path)
    day = log.add_day(D1, 20)
    first, second = day.opened()[3:5]
    bundle = build_inclusion_bundle(
        log.tree, first.index, day.checkpoint.size, D1, day.note, first.leaf, opening=first.opening
    )
    path = tmp_path / "owner-bundle.json"
    path.write_text(bundle.to_json())
    ok = _prove(log, path)
    assert ok.returncode == EXIT_OK, ok.stderr
    assert "3. opening                ok" in ok.stdout
    assert f"opened: a {first.leaf.event_type.value} event" in ok.stdout
    # An opening of another leaf, inside the bundle: refused at step 3.
    obj = json.loads(bundle.to_json())
    obj["opening"] = second.opening.to_json_obj()
    path.write_text(json.dumps(obj))
    bad = _prove(log, path)
    assert bad.returncode == EXIT_FAILED
    assert "step 3 (opening)" in bad.stderr and "day 2025-03-01" in bad.stderr
    # The public bundle with the opening given apart (--opening).
    public = build_inclusion_bundle(
        log.tree, first.index, day.checkpoint.size, D1, day.note, first.leaf
    )
    path.write_text(public.to_json())
    assert "3. opening                skipped" in _prove(log, path).stdout
    opening = tmp_path / "opening.json"
    opening.write_text(json.dumps(first.opening.to_json_obj(), indent=2))
    assert _prove(log, path, "--opening", str(opening)).returncode == EXIT_OK
    opening.write_text(json.dumps(second.opening.to_json_obj()))
    assert _prove(log, path, "--opening", str(opening)).returncode == EXIT_FAILED
    opening.write_text('{"salt": "zz"}')
    assert _prove(log, path, "--opening", str(opening)).returncode == EXIT_USAGE


def test_verify_a_full_export_checks_every_opening(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = SampleLog(tmp_path)
    day = log.add_day(D1, 30, drop_every=7)
    key = log.signer.verifier().vkey
    assert main(["verify", str(day.full_path), "--offline", "--log-key", key]) == EXIT_OK
    out = capsys.readouterr().out
    assert "7. openings               ok" in out
    assert f"full contents: {len(day.opened())} openings match" in out
    lines = day.full_path.read_bytes().splitlines(keepends=True)
    obj = json.loads(lines[3])
    obj["opening"]["salt"] = "00" * 32
    lines[3] = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    bad = tmp_path / "bad.full.jsonl"
    bad.write_bytes(b"".join(lines))
    assert main(["verify", str(bad), "--offline", "--log-key", key]) == EXIT_FAILED
    err = capsys.readouterr().err
    assert "day 2025-03-01: step 7 (openings) failed: line 4" in err


def test_v1_bundle_made_before_commitments_still_proves(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = str(DATA / "v1-log.vkey")
    bundle = str(DATA / "v1-bundle.json")
    assert main(["prove", bundle, "--offline", "--log-key", key]) == EXIT_OK
    out = capsys.readouterr().out
    assert "event 2 of day 2025-03-01: PROVEN" in out
    assert "3. opening                skipped" in out
    # Its document hash is in the clear: --document works without an opening.
    doc = tmp_path / "signed.bin"
    doc.write_bytes(b"doc2")  # the fixture logged SHA-256("doc2")
    assert main(["prove", bundle, "--offline", "--log-key", key, "--document", str(doc)]) == 0
    doc.write_bytes(b"doc3")
    code = main(["prove", bundle, "--offline", "--log-key", key, "--document", str(doc)])
    assert code == EXIT_FAILED
    assert "step 6 (document)" in capsys.readouterr().err


def test_fingerprint_of_a_log_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """What the centre publishes for auditors to pin: SHA-256 of the key
    text in groups of four (the auditor page prints the same)."""
    vkey = SampleLog(tmp_path).signer.verifier().vkey
    key_file = tmp_path / "log.vkey"
    key_file.write_text(vkey + "\n")
    for given in (vkey, str(key_file)):
        assert main(["fingerprint", "--log-key", given]) == EXIT_OK
        printed = capsys.readouterr().out.strip()
        assert printed.replace(" ", "") == hashlib.sha256(vkey.encode()).hexdigest()
        assert [len(g) for g in printed.split(" ")] == [4] * 16
    assert main(["fingerprint", "--log-key", "garbage"]) == EXIT_USAGE
