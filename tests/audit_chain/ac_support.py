"""Test support: a small in-memory audit log that closes days and writes exports.

It plays the server's part with real (software) keys: leaves are appended to a
MerkleTree, each day closes with an Ed25519-signed checkpoint and an export.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

from audit_chain.anvil import AnvilProcess, rpc_call
from audit_chain.checkpoint import Checkpoint, Ed25519NoteSigner, sign_checkpoint
from audit_chain.days import DayClock
from audit_chain.ethereum import EthereumAccount, SoftwareSecp256k1Signer
from audit_chain.export import DayExportHeader, write_day_export
from audit_chain.leaf import DroppedLeaf, EventLeaf, EventType
from audit_chain.merkle import MerkleTree

ORIGIN = "cloudsign.test/audit-log"


def fund(node: AnvilProcess, signer: SoftwareSecp256k1Signer) -> str:
    """Give a test signer's address ether on anvil."""
    address = EthereumAccount(signer).address
    rpc_call(node.rpc_url, "anvil_setBalance", [address, hex(10**20)])
    return address


TYPES = list(EventType)


def owner_tag(owner: str) -> bytes:
    return hashlib.sha256(b"owner:" + owner.encode()).digest()


def make_leaf(index: int, when: datetime, rnd: random.Random) -> EventLeaf:
    event_type = TYPES[rnd.randrange(len(TYPES))]
    doc = hashlib.sha256(f"doc{index}".encode()).digest() if event_type == "key.use" else None
    return EventLeaf(
        index=index,
        event_type=event_type,
        time=when,
        owner_tag=owner_tag(f"user{rnd.randrange(50)}"),
        credential_tag=hashlib.sha256(f"cred{index}".encode()).digest()[:16]
        if rnd.random() < 0.5
        else None,
        document_hash=doc,
        extra={"ip_country": "KZ", "attempt": rnd.randrange(5)} if rnd.random() < 0.3 else {},
    )


@dataclass
class DayLog:
    day: date
    header: DayExportHeader
    entries: list[EventLeaf | DroppedLeaf]
    checkpoint: Checkpoint
    note: str
    path: Path


@dataclass
class SampleLog:
    directory: Path
    signer: Ed25519NoteSigner = field(default_factory=lambda: Ed25519NoteSigner.generate(ORIGIN))
    clock: DayClock = field(default_factory=DayClock)
    tree: MerkleTree = field(default_factory=MerkleTree)
    leaves: list[EventLeaf | DroppedLeaf] = field(default_factory=list)
    days: list[DayLog] = field(default_factory=list)
    seed: int = 7

    def add_day(self, day: date, count: int, drop_every: int = 0) -> DayLog:
        rnd = random.Random(self.seed + day.toordinal())
        start, end = self.clock.bounds(day)
        step = (end - start) / max(count, 1)
        previous_note = self.days[-1].note if self.days else None
        previous_size = self.tree.size
        frontier = self.tree.frontier().hashes
        entries: list[EventLeaf | DroppedLeaf] = []
        for i in range(count):
            index = self.tree.size
            leaf = make_leaf(index, start + step * i + timedelta(microseconds=i), rnd)
            self.tree.append(leaf.leaf_hash())
            entry: EventLeaf | DroppedLeaf = leaf
            if drop_every and i % drop_every == drop_every - 1:
                entry = DroppedLeaf(index, leaf.leaf_hash())
            entries.append(entry)
        self.leaves.extend(entries)
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
        write_day_export(path, header, entries)
        log = DayLog(day, header, entries, checkpoint, note, path)
        self.days.append(log)
        return log
