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
from ac_support import SampleLog

from audit_chain.anvil import AnvilProcess, free_port, rpc_call
from audit_chain.bundle import InclusionBundle, build_inclusion_bundle
from audit_chain.cli import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, main
from audit_chain.errors import VerificationError
from audit_chain.ethereum import AnchorClient, SoftwareSecp256k1Signer
from audit_chain.leaf import EventLeaf
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
    assert "9. confirmations" in out.out
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
    assert "step 9 (confirmations)" in err
    # Not anchored at all.
    assert _run(anvil, log, address, "verify", str(log.days[2].path)) == EXIT_FAILED
    err = capsys.readouterr().err
    assert "day 2025-03-03" in err
    assert "step 8 (anchor)" in err
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
    assert "step 8 (anchor)" in capsys.readouterr().err


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
    assert isinstance(entry, EventLeaf)
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
    use = next(e for e in day.entries if isinstance(e, EventLeaf) and e.document_hash is not None)
    bundle = build_inclusion_bundle(
        log.tree, use.index, day.checkpoint.size, day.day, day.note, use
    )
    document = f"doc{use.index}".encode()  # ac_support hashes this as the signed document
    async with AnchorClient(anvil.rpc_url, address) as client:
        await verify_inclusion_bundle(
            bundle, log.signer.verifier(), client, min_confirmations=1, document=document
        )
        with pytest.raises(VerificationError) as e:
            await verify_inclusion_bundle(
                bundle, log.signer.verifier(), client, min_confirmations=1, document=b"forged"
            )
        assert e.value.step_name == "document"
        assert e.value.day == day.day.isoformat()
