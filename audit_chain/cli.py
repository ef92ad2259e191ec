"""The auditor's command line: ``audit-chain verify`` and ``audit-chain prove``.

This module owns argument parsing, output and exit codes; the checks live in
:mod:`audit_chain.verify`. Exit codes: 0 verified, 1 a check failed, 2 bad usage
or unreadable input, 3 the chain could not be reached (retry later).

    audit-chain verify 2025-03-01.jsonl --rpc URL --contract 0x... --log-key KEY \\
        [--min-confirmations N] [--previous 2025-02-28.jsonl]
    audit-chain prove bundle.json --rpc URL --contract 0x... --log-key KEY \\
        [--opening FILE] [--document FILE]

``KEY`` is the log's signed-note verifier key (``name+keyid+base64``) or a file
holding it. ``verify`` checks every opening when given a full (auditor's)
export; ``prove`` checks the opening inside the bundle (an owner's bundle) or
one given with ``--opening``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TextIO

from audit_chain import verify as checklists
from audit_chain.checkpoint import NoteVerifier, key_fingerprint
from audit_chain.errors import AuditChainError, VerificationError
from audit_chain.ethereum import AnchorClient
from audit_chain.leaf import LeafOpening, loads_strict, opening_from_json_obj
from audit_chain.verify import (
    DEFAULT_MIN_CONFIRMATIONS,
    ProvenEvent,
    VerifiedDay,
    verify_day,
    verify_day_offline,
    verify_inclusion_bundle,
)

__all__ = ["main"]

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_UNREACHABLE: Final = 3
#: Exports smaller than this finish too fast for a progress bar to help.
PROGRESS_MIN_LEAVES: Final = 50_000
_BAR_WIDTH: Final = 30

DAY_STEPS: Final = tuple(name for _, name in checklists.DAY_STEPS)
PROVE_STEPS: Final = tuple(name for _, name in checklists.PROVE_STEPS)


class ProgressBar:
    """A plain-text progress bar on a stream (stderr), redrawn at most 10 times a second."""

    def __init__(self, stream: TextIO, label: str) -> None:
        self._stream = stream
        self._label = label
        self._last = 0.0
        self._drawn = False

    def __call__(self, done: int, total: int) -> None:
        if total < PROGRESS_MIN_LEAVES:
            return
        now = time.monotonic()
        if done < total and now - self._last < 0.1:
            return
        self._last = now
        fraction = done / total if total else 1.0
        filled = int(fraction * _BAR_WIDTH)
        bar = "#" * filled + "-" * (_BAR_WIDTH - filled)
        self._stream.write(f"\r{self._label} [{bar}] {fraction:6.1%} {done}/{total} leaves")
        self._stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            self._stream.write("\n")
            self._stream.flush()


def _load_key(text: str) -> NoteVerifier:
    path = Path(text)
    try:
        if path.is_file():
            text = path.read_text("utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise AuditChainError(f"cannot read log key {text}: {e}", code="usage") from e
    return NoteVerifier.from_vkey(text)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="audit-chain",
        description="Verify cloudsign audit-log days and event inclusion against the chain.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def chain_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--rpc", help="JSON-RPC URL of an Ethereum node you trust")
        p.add_argument("--contract", help="address of the AuditAnchor contract")
        p.add_argument(
            "--log-key", required=True, help="log verifier key (name+id+base64) or file with it"
        )
        p.add_argument(
            "--min-confirmations",
            type=int,
            default=DEFAULT_MIN_CONFIRMATIONS,
            help=f"blocks the anchor must be buried under (default {DEFAULT_MIN_CONFIRMATIONS})",
        )
        p.add_argument(
            "--offline", action="store_true", help="skip the chain steps (anchor, confirmations)"
        )

    verify = sub.add_parser("verify", help="verify one day export")
    verify.add_argument("export", help="the day export (JSON lines)")
    chain_args(verify)
    verify.add_argument("--previous", help="the previous day's export, to check consistency")
    verify.add_argument(
        "--progress",
        choices=("auto", "always", "never"),
        default="auto",
        help="progress bar on stderr (auto: when stderr is a terminal)",
    )

    prove = sub.add_parser("prove", help="prove one event is in an anchored day")
    prove.add_argument("bundle", help="inclusion proof JSON as served by the service")
    chain_args(prove)
    prove.add_argument(
        "--opening", help="the event's opening (JSON), to check against the leaf's commitment"
    )
    prove.add_argument("--document", help="the signed file, to match the logged document hash")
    fingerprint = sub.add_parser(
        "fingerprint", help="print the fingerprint of a log key, to compare with the published one"
    )
    fingerprint.add_argument(
        "--log-key", required=True, help="log verifier key (name+id+base64) or file with it"
    )
    return parser


def _print_checklist(out: TextIO, steps: Sequence[str], skipped: set[str]) -> None:
    for number, name in enumerate(steps, start=1):
        mark = "skipped" if name in skipped else "ok"
        out.write(f"  {number:>2}. {name:<22} {mark}\n")


def _report_day(out: TextIO, result: VerifiedDay, skipped: set[str]) -> None:
    cp = result.checkpoint
    out.write(f"day {result.day.isoformat()}: VERIFIED\n")
    _print_checklist(out, DAY_STEPS, skipped)
    withheld = f", {result.withheld_count} withheld" if result.withheld_count else ""
    out.write(
        f"  events {result.leaf_count} ({result.dropped_count} dropped by retention{withheld}), "
        f"tree size {cp.size}, root {cp.root_hash.hex()}\n"
    )
    if result.full:
        out.write(f"  full contents: {result.opened_count} openings match their commitments\n")
    if result.anchor is not None:
        tx = result.anchor.tx_hash.hex() if result.anchor.tx_hash else "unknown"
        out.write(
            f"  anchored in block {result.anchor.block_number} (tx 0x{tx}), "
            f"{result.anchor.confirmations} confirmations\n"
        )


def _report_event(out: TextIO, result: ProvenEvent, skipped: set[str]) -> None:
    out.write(f"event {result.index} of day {result.day.isoformat()}: PROVEN\n")
    _print_checklist(out, PROVE_STEPS, skipped)
    out.write(
        f"  leaf hash {result.leaf_hash.hex()}, in tree size {result.checkpoint.size} "
        f"root {result.checkpoint.root_hash.hex()}\n"
    )
    if result.opening is not None and result.leaf is not None:
        out.write(f"  opened: a {result.leaf.event_type.value} event; the commitment matches\n")
    if result.anchor is not None:
        out.write(
            f"  anchored in block {result.anchor.block_number}, "
            f"{result.anchor.confirmations} confirmations\n"
        )


def _client(args: argparse.Namespace) -> AnchorClient | None:
    if args.offline:
        return None
    if not args.rpc or not args.contract:
        raise AuditChainError("--rpc and --contract are required (or --offline)", code="usage")
    return AnchorClient(args.rpc, args.contract)


#: An opening file holds one JSON object; a leaf's opening is at most a few KB.
MAX_OPENING_FILE_BYTES: Final = 64 * 1024


@dataclass(frozen=True)
class _ProveInputs:
    bundle: bytes | None = None
    document: bytes | None = None
    opening: LeafOpening | None = None

    def __repr__(self) -> str:  # the document and the opening are the owner's
        return "_ProveInputs(...)"


def _read_opening(path: str) -> LeafOpening:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_OPENING_FILE_BYTES + 1)
    except OSError as e:
        raise AuditChainError(f"cannot read input: {e}", code="usage") from e
    if len(data) > MAX_OPENING_FILE_BYTES:
        raise AuditChainError(f"{path} is too large for an opening", code="usage")
    try:
        return opening_from_json_obj(loads_strict(data))
    except AuditChainError as e:
        raise AuditChainError(f"{path} is not an opening: {e.message}", code="usage") from e


def _read_inputs(args: argparse.Namespace) -> _ProveInputs:
    if args.command != "prove":
        return _ProveInputs()
    try:
        data = Path(args.bundle).read_bytes()
        document = Path(args.document).read_bytes() if args.document else None
    except OSError as e:
        raise AuditChainError(f"cannot read input: {e}", code="usage") from e
    opening = _read_opening(args.opening) if args.opening else None
    return _ProveInputs(data, document, opening)


async def _run(
    args: argparse.Namespace,
    log_key: NoteVerifier,
    inputs: _ProveInputs,
    out: TextIO,
    err: TextIO,
) -> int:
    client = _client(args)
    chain_skipped = {"anchor", "confirmations"} if client is None else set()
    try:
        if args.command == "verify":
            show = args.progress == "always" or (args.progress == "auto" and err.isatty())
            bar = ProgressBar(err, Path(args.export).name) if show else None
            try:
                if client is None:
                    result = verify_day_offline(
                        args.export, log_key, previous=args.previous, progress=bar
                    )
                else:
                    result = await verify_day(
                        args.export,
                        log_key,
                        client,
                        min_confirmations=args.min_confirmations,
                        previous=args.previous,
                        progress=bar,
                    )
            finally:
                if bar is not None:
                    bar.close()
            skipped = set(chain_skipped)
            if args.previous is None:
                skipped.add("consistency")
            if not result.full:
                skipped.add("openings")
            _report_day(out, result, skipped)
        else:
            assert inputs.bundle is not None
            event = await verify_inclusion_bundle(
                inputs.bundle,
                log_key,
                client,
                min_confirmations=args.min_confirmations,
                document=inputs.document,
                opening=inputs.opening,
            )
            skipped = set(chain_skipped)
            if inputs.document is None:
                skipped.add("document")
            if event.opening is None:
                skipped.add("opening")
            _report_event(out, event, skipped)
        if client is None:
            out.write("  NOTE: --offline: the on-chain anchor was not checked\n")
        return EXIT_OK
    finally:
        if client is not None:
            await client.aclose()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    out, err = sys.stdout, sys.stderr
    try:
        log_key = _load_key(args.log_key)
        if args.command == "fingerprint":
            out.write(f"{key_fingerprint(log_key.vkey)}\n")
            return 0
        inputs = _read_inputs(args)
        return asyncio.run(_run(args, log_key, inputs, out, err))
    except VerificationError as e:
        err.write(f"FAILED: {e.message}\n")
        cause = e.__cause__
        if isinstance(cause, AuditChainError) and cause.code == "chain.unreachable":
            return EXIT_UNREACHABLE
        return EXIT_FAILED
    except AuditChainError as e:
        err.write(f"error: {e.message}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        err.write("interrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
