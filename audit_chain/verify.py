"""The auditor's and the citizen's verifiers, as numbered checklists.

This module owns what "verified" means. Each step either passes or raises one
:class:`~audit_chain.errors.VerificationError` carrying the step number and
name and the day, so the first failure is reported exactly. Nothing here trusts
the certification centre: the inputs are the export (or bundle) it published,
the log's public key, and the auditor's own view of the chain.

Day export checklist (:func:`verify_day_offline` runs 1–8, :func:`verify_day` all):

 1. ``export-header``        the header parses and is internally consistent
 2. ``checkpoint-signature`` the day's checkpoint is signed by the log key, same origin
 3. ``previous-checkpoint``  the previous checkpoint (if any) is signed by the log key
 4. ``frontier``             the frontier rebuilds the previous checkpoint's root
 5. ``leaves``               every line is a canonical leaf (v1 or v2) or a dropped or
                             withheld hash, indices contiguous, event times inside the day
 6. ``root``                 the leaves appended to the frontier rebuild the day's root
 7. ``openings``             (full exports only; skipped for a public one) every v2 leaf
                             comes with an opening that opens its commitment, and no
                             content is withheld
 8. ``consistency``          (with ``previous=``) the previous day's export verifies and
                             ends exactly where this one starts
 9. ``anchor``               the contract's anchor of the day states the same root and size
10. ``confirmations``        the anchor is at least ``min_confirmations`` blocks deep

A public export gets exactly the checks it got before v2 leaves (1–6, 8–10):
they need index, type and time alone. The openings are checked against leaves
that step 6 has already tied to the signed root.

Inclusion checklist (:func:`verify_inclusion_bundle`):

 1. ``bundle`` 2. ``leaf`` 3. ``opening`` (only with an opening: in the bundle, or
 given apart) 4. ``checkpoint-signature`` 5. ``inclusion`` 6. ``document`` (only
 with a document) 7. ``anchor`` 8. ``confirmations``
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import IO, Final, NoReturn

from audit_chain.anchors import AnchorLookup, AnchorRecord
from audit_chain.bundle import InclusionBundle
from audit_chain.checkpoint import Checkpoint, NoteVerifier
from audit_chain.days import DayClock, parse_day
from audit_chain.errors import AuditChainError, VerificationError
from audit_chain.export import MAX_HEADER_BYTES, DayExportHeader, DayExportReader
from audit_chain.leaf import CommittedLeaf, EventLeaf, Leaf, LeafOpening
from audit_chain.merkle import CompactRange, verify_inclusion

__all__ = [
    "DAY_STEPS",
    "DEFAULT_MIN_CONFIRMATIONS",
    "MAX_CLOCK_SKEW",
    "PROGRESS_EVERY",
    "PROVE_STEPS",
    "ProvenEvent",
    "VerifiedDay",
    "verify_day",
    "verify_day_offline",
    "verify_inclusion_bundle",
]

#: Events stamped just before midnight may be appended just after the cut, and
#: the reverse; tolerate this much outside the day's bounds.
MAX_CLOCK_SKEW: Final = timedelta(minutes=5)
#: Blocks on top of the anchor's block (counting it) before a day counts as anchored.
DEFAULT_MIN_CONFIRMATIONS: Final = 12
#: How often (in leaves) the progress callback is called.
PROGRESS_EVERY: Final = 10_000

# Day export checklist.
STEP_HEADER: Final = (1, "export-header")
STEP_CHECKPOINT: Final = (2, "checkpoint-signature")
STEP_PREVIOUS: Final = (3, "previous-checkpoint")
STEP_FRONTIER: Final = (4, "frontier")
STEP_LEAVES: Final = (5, "leaves")
STEP_ROOT: Final = (6, "root")
STEP_OPENINGS: Final = (7, "openings")
STEP_CONSISTENCY: Final = (8, "consistency")
STEP_ANCHOR: Final = (9, "anchor")
STEP_CONFIRMATIONS: Final = (10, "confirmations")
DAY_STEPS: Final = (
    STEP_HEADER,
    STEP_CHECKPOINT,
    STEP_PREVIOUS,
    STEP_FRONTIER,
    STEP_LEAVES,
    STEP_ROOT,
    STEP_OPENINGS,
    STEP_CONSISTENCY,
    STEP_ANCHOR,
    STEP_CONFIRMATIONS,
)

# Inclusion checklist.
ISTEP_BUNDLE: Final = (1, "bundle")
ISTEP_LEAF: Final = (2, "leaf")
ISTEP_OPENING: Final = (3, "opening")
ISTEP_CHECKPOINT: Final = (4, "checkpoint-signature")
ISTEP_INCLUSION: Final = (5, "inclusion")
ISTEP_DOCUMENT: Final = (6, "document")
ISTEP_ANCHOR: Final = (7, "anchor")
ISTEP_CONFIRMATIONS: Final = (8, "confirmations")
PROVE_STEPS: Final = (
    ISTEP_BUNDLE,
    ISTEP_LEAF,
    ISTEP_OPENING,
    ISTEP_CHECKPOINT,
    ISTEP_INCLUSION,
    ISTEP_DOCUMENT,
    ISTEP_ANCHOR,
    ISTEP_CONFIRMATIONS,
)

Progress = Callable[[int, int], None]


def _fail(
    step: tuple[int, str], day: str | None, message: str, cause: BaseException | None = None
) -> NoReturn:
    raise VerificationError(step[0], step[1], day, message) from cause


@dataclass(frozen=True)
class VerifiedDay:
    """What a successful day verification established. ``full``: the export
    carried every content and ``opened_count`` openings were checked."""

    day: date
    checkpoint: Checkpoint
    previous: Checkpoint | None
    leaf_count: int
    dropped_count: int
    start_frontier: CompactRange
    end_frontier: CompactRange
    anchor: AnchorRecord | None = None
    full: bool = False
    withheld_count: int = 0
    opened_count: int = 0


@dataclass(frozen=True)
class ProvenEvent:
    """What a successful inclusion verification established. ``opening`` is
    set when an opening was checked against the leaf's commitment."""

    day: date
    index: int
    leaf_hash: bytes
    checkpoint: Checkpoint
    anchor: AnchorRecord | None
    leaf: Leaf | None = None
    opening: LeafOpening | None = None


def verify_day_offline(
    export: str | Path,
    log_key: NoteVerifier,
    *,
    previous: str | Path | None = None,
    progress: Progress | None = None,
) -> VerifiedDay:
    """Steps 1–8 of the day checklist: everything but the chain."""
    result = _verify_export_file(Path(export), log_key, progress)
    if previous is not None:
        day = result.day.isoformat()
        try:
            prev = _verify_export_file(Path(previous), log_key, None)
        except VerificationError as e:
            _fail(STEP_CONSISTENCY, day, f"the previous export does not verify: {e.message}", e)
        if prev.day >= result.day:
            _fail(STEP_CONSISTENCY, day, f"previous export is for {prev.day}, not an earlier day")
        if result.previous is None or prev.checkpoint != result.previous:
            _fail(
                STEP_CONSISTENCY,
                day,
                f"this export does not start at the checkpoint of {prev.day}",
            )
        if prev.end_frontier.hashes != result.start_frontier.hashes:
            _fail(STEP_CONSISTENCY, day, f"frontier differs from where {prev.day} ended")
    return result


def _verify_export_file(
    path: Path, log_key: NoteVerifier, progress: Progress | None
) -> VerifiedDay:
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed in finally, after streaming
    except OSError as e:
        _fail(STEP_HEADER, None, f"cannot open {path}: {e.strerror}", e)
    try:
        return _verify_export_stream(f, log_key, progress)
    finally:
        f.close()


def _day_hint(f: IO[bytes]) -> str | None:
    """Best-effort day of an export whose header failed validation, for the message."""
    try:
        f.seek(0)
        obj = json.loads(f.readline(MAX_HEADER_BYTES + 1))
        day = obj.get("day") if isinstance(obj, dict) else None
        return parse_day(day).isoformat() if isinstance(day, str) else None
    except (OSError, ValueError, AuditChainError):
        return None


def _verify_export_stream(
    f: IO[bytes], log_key: NoteVerifier, progress: Progress | None
) -> VerifiedDay:
    # 1. export-header
    try:
        reader = DayExportReader(f)
    except AuditChainError as e:
        _fail(STEP_HEADER, _day_hint(f), e.message, e)
    except OSError as e:
        _fail(STEP_HEADER, None, f"cannot read: {e}", e)
    header: DayExportHeader = reader.header
    day = header.day_text

    # 2. checkpoint-signature
    try:
        checkpoint = log_key.open_checkpoint(header.checkpoint, origin=header.origin)
    except AuditChainError as e:
        _fail(STEP_CHECKPOINT, day, e.message, e)

    # 3. previous-checkpoint
    previous: Checkpoint | None = None
    if header.previous_checkpoint is not None:
        try:
            previous = log_key.open_checkpoint(header.previous_checkpoint, origin=header.origin)
        except AuditChainError as e:
            _fail(STEP_PREVIOUS, day, e.message, e)

    # 4. frontier
    start_frontier = header.start_range()
    rng = start_frontier.copy()
    expected_root = previous.root_hash if previous is not None else CompactRange().root()
    if rng.root() != expected_root:
        _fail(STEP_FRONTIER, day, "frontier hashes do not rebuild the previous root")

    # 5. leaves
    clock = DayClock(header.utc_offset)
    start, end = clock.bounds(header.day)
    earliest, latest = start - MAX_CLOCK_SKEW, end + MAX_CLOCK_SKEW
    total = header.leaf_count
    count = dropped = withheld = opened = 0
    full = header.full
    # Step 7 is judged after step 6, but in the same pass over the file: the
    # first opening failure is kept, and reported only if 5 and 6 pass.
    opening_failure: str | None = None
    append = rng.append
    try:
        for entry in reader.entries():
            leaf = entry.leaf
            if leaf is None:
                if entry.withheld:
                    withheld += 1
                    if full and opening_failure is None:
                        opening_failure = (
                            f"line {entry.line_number}: the content of leaf {entry.index} "
                            "is withheld from a full export"
                        )
                else:
                    dropped += 1
            else:
                if not earliest <= leaf.time < latest:
                    _fail(
                        STEP_LEAVES,
                        day,
                        f"line {entry.line_number}: leaf {entry.index} time "
                        f"{leaf.time.isoformat()} is outside the day",
                    )
                if full and isinstance(leaf, CommittedLeaf):
                    if entry.opening is not None and entry.opening.opens(leaf):
                        opened += 1
                    elif opening_failure is None:
                        opening_failure = f"line {entry.line_number}: " + (
                            f"leaf {entry.index} has no opening"
                            if entry.opening is None
                            else f"the opening of leaf {entry.index} does not match its commitment"
                        )
            append(entry.leaf_hash)
            count += 1
            if progress is not None and count % PROGRESS_EVERY == 0:
                progress(count, total)
    except VerificationError:
        raise
    except AuditChainError as e:
        _fail(STEP_LEAVES, day, e.message, e)
    except OSError as e:
        _fail(STEP_LEAVES, day, f"cannot read: {e}", e)
    if progress is not None:
        progress(count, total)

    # 6. root
    if rng.size != checkpoint.size:
        _fail(STEP_ROOT, day, f"{rng.size} leaves, checkpoint states {checkpoint.size}")
    if rng.root() != checkpoint.root_hash:
        _fail(STEP_ROOT, day, "leaves do not rebuild the checkpoint's root hash")

    # 7. openings
    if opening_failure is not None:
        _fail(STEP_OPENINGS, day, opening_failure)

    return VerifiedDay(
        day=header.day,
        checkpoint=checkpoint,
        previous=previous,
        leaf_count=count,
        dropped_count=dropped,
        start_frontier=start_frontier,
        end_frontier=rng,
        full=full,
        withheld_count=withheld,
        opened_count=opened,
    )


async def _check_anchor(
    day: date,
    checkpoint: Checkpoint,
    anchors: AnchorLookup,
    min_confirmations: int,
    steps: tuple[tuple[int, str], tuple[int, str]],
) -> AnchorRecord:
    anchor_step, depth_step = steps
    text = day.isoformat()
    try:
        anchor = await anchors.find_anchor(day)
    except AuditChainError as e:
        _fail(anchor_step, text, e.message, e)
    if anchor is None:
        _fail(anchor_step, text, "the day has no anchor on chain")
    if anchor.root != checkpoint.root_hash:
        _fail(
            anchor_step,
            text,
            f"on-chain root {anchor.root.hex()} is not the checkpoint's "
            f"{checkpoint.root_hash.hex()}",
        )
    if anchor.size != checkpoint.size:
        _fail(anchor_step, text, f"on-chain size {anchor.size} is not {checkpoint.size}")
    if anchor.confirmations < min_confirmations:
        _fail(
            depth_step,
            text,
            f"anchor has {anchor.confirmations} confirmations, {min_confirmations} required",
        )
    return anchor


async def verify_day(
    export: str | Path,
    log_key: NoteVerifier,
    anchors: AnchorLookup,
    *,
    min_confirmations: int = DEFAULT_MIN_CONFIRMATIONS,
    previous: str | Path | None = None,
    progress: Progress | None = None,
) -> VerifiedDay:
    """The whole day checklist (steps 1–10)."""
    result = verify_day_offline(export, log_key, previous=previous, progress=progress)
    anchor = await _check_anchor(
        result.day,
        result.checkpoint,
        anchors,
        min_confirmations,
        (STEP_ANCHOR, STEP_CONFIRMATIONS),
    )
    return VerifiedDay(
        day=result.day,
        checkpoint=result.checkpoint,
        previous=result.previous,
        leaf_count=result.leaf_count,
        dropped_count=result.dropped_count,
        start_frontier=result.start_frontier,
        end_frontier=result.end_frontier,
        anchor=anchor,
        full=result.full,
        withheld_count=result.withheld_count,
        opened_count=result.opened_count,
    )


_DOCUMENT_HASHES: Final = {32: "sha256", 48: "sha384", 64: "sha512"}


async def verify_inclusion_bundle(
    bundle: InclusionBundle | str | bytes,
    log_key: NoteVerifier,
    anchors: AnchorLookup | None,
    *,
    min_confirmations: int = DEFAULT_MIN_CONFIRMATIONS,
    document: bytes | None = None,
    opening: LeafOpening | None = None,
) -> ProvenEvent:
    """The citizen's checklist: this event is in the log, under an anchored root.

    ``anchors=None`` skips steps 7–8 (offline check against the signed checkpoint).
    ``opening`` (one held apart from the bundle) and an opening inside the
    bundle are each checked at step 3. ``document`` (the signed file's bytes)
    adds step 6; for a v2 leaf the logged digest is in the opening, so it needs one.
    """
    # 1. bundle
    if not isinstance(bundle, InclusionBundle):
        try:
            bundle = InclusionBundle.from_json(bundle)
        except AuditChainError as e:
            _fail(ISTEP_BUNDLE, None, e.message, e)
    day = bundle.day.isoformat()
    leaf = bundle.leaf

    # 2. leaf
    if leaf is not None:
        if leaf.leaf_hash() != bundle.leaf_hash:
            _fail(ISTEP_LEAF, day, "leaf content does not hash to the stated leaf hash")
        if leaf.index != bundle.index:
            _fail(ISTEP_LEAF, day, f"leaf says index {leaf.index}, bundle {bundle.index}")

    # 3. opening
    content: EventLeaf | LeafOpening | None = leaf if isinstance(leaf, EventLeaf) else None
    for given in (bundle.opening, opening):
        if given is None:
            continue
        if leaf is None:
            _fail(ISTEP_OPENING, day, "the bundle has no leaf whose commitment it could open")
        if not isinstance(leaf, CommittedLeaf):
            _fail(ISTEP_OPENING, day, "a v1 leaf has no commitment: its content is in the clear")
        try:
            given.check(leaf)
        except AuditChainError as e:
            _fail(ISTEP_OPENING, day, e.message, e)
        content = given

    # 4. checkpoint-signature
    try:
        checkpoint = log_key.open_checkpoint(bundle.checkpoint)
    except AuditChainError as e:
        _fail(ISTEP_CHECKPOINT, day, e.message, e)

    # 5. inclusion
    if bundle.tree_size != checkpoint.size:
        _fail(ISTEP_INCLUSION, day, "proof is for another tree size than the checkpoint")
    try:
        verify_inclusion(
            bundle.leaf_hash, bundle.index, bundle.tree_size, bundle.proof, checkpoint.root_hash
        )
    except AuditChainError as e:
        _fail(ISTEP_INCLUSION, day, e.message, e)

    # 6. document
    if document is not None:
        if content is None and isinstance(leaf, CommittedLeaf):
            _fail(ISTEP_DOCUMENT, day, "the logged digest is in the leaf's opening; none given")
        if content is None or content.document_hash is None:
            _fail(ISTEP_DOCUMENT, day, "the event carries no document hash")
        algorithm = _DOCUMENT_HASHES[len(content.document_hash)]
        if hashlib.new(algorithm, document).digest() != content.document_hash:
            _fail(ISTEP_DOCUMENT, day, f"the document's {algorithm} is not the logged one")

    # 7–8. anchor, confirmations
    anchor = None
    if anchors is not None:
        anchor = await _check_anchor(
            bundle.day,
            checkpoint,
            anchors,
            min_confirmations,
            (ISTEP_ANCHOR, ISTEP_CONFIRMATIONS),
        )
    return ProvenEvent(
        day=bundle.day,
        index=bundle.index,
        leaf_hash=bundle.leaf_hash,
        checkpoint=checkpoint,
        anchor=anchor,
        leaf=leaf,
        opening=content if isinstance(content, LeafOpening) else None,
    )
