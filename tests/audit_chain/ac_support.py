"""Test support: a small in-memory audit log that closes days and writes exports.

It plays the server's part with real (software) keys: leaves are appended to a
MerkleTree, each day closes with an Ed25519-signed checkpoint and two exports,
the public one (v2 leaves without openings, v1 leaves as hashes) and the full
one an auditor gets (v2 leaves with openings, v1 leaves in the clear).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit_chain.anvil import AnvilProcess, rpc_call
from audit_chain.checkpoint import Checkpoint, Ed25519NoteSigner, sign_checkpoint
from audit_chain.days import DayClock
from audit_chain.ethereum import EthereumAccount, SoftwareSecp256k1Signer
from audit_chain.export import CONTENTS_FULL, DayExportHeader, ExportItem, write_day_export
from audit_chain.leaf import (
    SALT_BYTES,
    DroppedLeaf,
    EventLeaf,
    EventType,
    LeafOpening,
    OpenedLeaf,
    WithheldLeaf,
)
from audit_chain.merkle import MerkleTree

ORIGIN = "cloudsign.test/audit-log"
DATA = Path(__file__).parent / "data"


def v1_fixture_signer() -> Ed25519NoteSigner:
    """The key that signed the v1 fixtures in data/ (made by the pre-v2 code)."""
    seed = hashlib.sha256(b"v1 fixture key").digest()
    return Ed25519NoteSigner(ORIGIN, Ed25519PrivateKey.from_private_bytes(seed))


def fund(node: AnvilProcess, signer: SoftwareSecp256k1Signer) -> str:
    """Give a test signer's address ether on anvil."""
    address = EthereumAccount(signer).address
    rpc_call(node.rpc_url, "anvil_setBalance", [address, hex(10**20)])
    return address


TYPES = list(EventType)


def owner_tag(owner: str) -> bytes:
    return hashlib.sha256(b"owner:" + owner.encode()).digest()


def document_of(index: int) -> bytes:
    """The 'signed document' of the key.use event at `index`."""
    return f"doc{index}".encode()


def _private(index: int, rnd: random.Random) -> tuple[EventType, dict[str, object]]:
    # Every fourth a key.use, so each day has signed documents whatever the
    # number of event types; the rest drawn from all of them.
    event_type = EventType.KEY_USE if index % 4 == 0 else TYPES[rnd.randrange(len(TYPES))]
    doc = hashlib.sha256(document_of(index)).digest() if event_type == "key.use" else None
    return event_type, {
        "owner_tag": owner_tag(f"user{rnd.randrange(50)}"),
        "credential_tag": hashlib.sha256(f"cred{index}".encode()).digest()[:16]
        if rnd.random() < 0.5
        else None,
        "document_hash": doc,
        "extra": {"ip_country": "KZ", "attempt": rnd.randrange(5)} if rnd.random() < 0.3 else {},
    }


def make_event(index: int, when: datetime, rnd: random.Random) -> OpenedLeaf:
    """A v2 leaf with its opening (the salt drawn from `rnd`, so runs repeat)."""
    event_type, private = _private(index, rnd)
    opening = LeafOpening(rnd.randbytes(SALT_BYTES), **private)  # type: ignore[arg-type]
    return OpenedLeaf.seal(index, event_type, when, opening)


def make_v1_leaf(index: int, when: datetime, rnd: random.Random) -> EventLeaf:
    """A leaf as logged before commitments: everything in the clear."""
    event_type, private = _private(index, rnd)
    return EventLeaf(index, event_type, when, **private)  # type: ignore[arg-type]


@dataclass
class DayLog:
    day: date
    header: DayExportHeader
    entries: list[ExportItem]  # as in the public export
    full_entries: list[ExportItem]  # as in the full export
    checkpoint: Checkpoint
    note: str
    path: Path
    full_path: Path

    def opened(self) -> list[OpenedLeaf]:
        return [e for e in self.full_entries if isinstance(e, OpenedLeaf)]


@dataclass
class SampleLog:
    directory: Path
    signer: Ed25519NoteSigner = field(default_factory=lambda: Ed25519NoteSigner.generate(ORIGIN))
    clock: DayClock = field(default_factory=DayClock)
    tree: MerkleTree = field(default_factory=MerkleTree)
    leaves: list[ExportItem] = field(default_factory=list)
    days: list[DayLog] = field(default_factory=list)
    seed: int = 7
    #: The checkpoint the first added day follows (a log continued from elsewhere).
    start_note: str | None = None

    def add_day(self, day: date, count: int, drop_every: int = 0, v1_every: int = 0) -> DayLog:
        """Close `day` with `count` events; every `drop_every`-th dropped by
        retention, every `v1_every`-th a v1 leaf (a day of the transition)."""
        rnd = random.Random(self.seed + day.toordinal())
        start, end = self.clock.bounds(day)
        step = (end - start) / max(count, 1)
        previous_note = self.days[-1].note if self.days else self.start_note
        previous_size = self.tree.size
        frontier = self.tree.frontier().hashes
        public: list[ExportItem] = []
        full: list[ExportItem] = []
        for i in range(count):
            index = self.tree.size
            when = start + step * i + timedelta(microseconds=i)
            if v1_every and i % v1_every == v1_every - 1:
                v1 = make_v1_leaf(index, when, rnd)
                h = v1.leaf_hash()
                pair: tuple[ExportItem, ExportItem] = (WithheldLeaf(index, h), v1)
            else:
                opened = make_event(index, when, rnd)
                h = opened.leaf_hash()
                pair = (opened.leaf, opened)
            self.tree.append(h)
            if drop_every and i % drop_every == drop_every - 1:
                pair = (DroppedLeaf(index, h), DroppedLeaf(index, h))
            public.append(pair[0])
            full.append(pair[1])
        self.leaves.extend(public)
        checkpoint = Checkpoint(ORIGIN, self.tree.size, self.tree.root())
        note = sign_checkpoint(checkpoint, self.signer)
        header = DayExportHeader(
            day=day,
            origin=ORIGIN,
            previous_checkpoint=previous_note,
            frontier=frontier,
            checkpoint=note,
            utc_offset=self.clock.utc_offset,
        )
        assert header.previous_size == previous_size
        path = self.directory / f"{day.isoformat()}.jsonl"
        write_day_export(path, header, public)
        full_header = DayExportHeader(
            day, ORIGIN, previous_note, frontier, note, self.clock.utc_offset, CONTENTS_FULL
        )
        full_path = self.directory / f"{day.isoformat()}.full.jsonl"
        write_day_export(full_path, full_header, full)
        log = DayLog(day, header, public, full, checkpoint, note, path, full_path)
        self.days.append(log)
        return log
