"""Benchmark of audit_chain at one million events a day. Prints figures; not a test.

    .venv/bin/python bench/bench_audit_chain.py [--events N] [--no-chain]

Measures: a day's root over N leaf hashes (bulk level build and streaming
compact range), inclusion-proof latency p50/p99 at that size, writing a day
export of N events, the auditor's offline verification of it, the chain steps
on a local anvil (if found), and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import random
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

from audit_chain.anvil import AnvilProcess, find_anvil, rpc_call
from audit_chain.checkpoint import Checkpoint, Ed25519NoteSigner, sign_checkpoint
from audit_chain.days import DayClock
from audit_chain.errors import AnvilError
from audit_chain.ethereum import AnchorClient, EthereumAccount, SoftwareSecp256k1Signer
from audit_chain.export import DayExportHeader, write_day_export
from audit_chain.leaf import EventLeaf, EventType
from audit_chain.merkle import MerkleTree, root_from_leaf_hashes
from audit_chain.verify import verify_day, verify_day_offline

ORIGIN = "bench.cloudsign/audit-log"
DAY = date(2025, 3, 1)


def timed(label: str, fn):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    result = fn()
    print(f"{label:<52} {time.perf_counter() - start:8.3f} s", flush=True)
    return result


def leaves(n: int, first_index: int) -> Iterator[EventLeaf]:
    start, _ = DayClock().bounds(DAY)
    step = timedelta(days=1) / n
    types = list(EventType)
    tags = [hashlib.sha256(f"owner{i}".encode()).digest() for i in range(1000)]
    for i in range(n):
        t = types[i % len(types)]
        yield EventLeaf(
            index=first_index + i,
            event_type=t,
            time=start + step * i,
            owner_tag=tags[i % 1000],
            credential_tag=tags[(i * 7) % 1000][:16],
            document_hash=hashlib.sha256(i.to_bytes(8, "big")).digest()
            if t is EventType.KEY_USE
            else None,
            extra={"ip_country": "KZ"} if i % 3 == 0 else {},
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--no-chain", action="store_true")
    args = parser.parse_args()
    n = args.events
    print(f"audit_chain benchmark, {n:,} events, Python {sys.version.split()[0]}")

    hashes = [hashlib.sha256(i.to_bytes(8, "big")).digest() for i in range(n)]
    root_stream = timed("root, streaming compact range", lambda: root_from_leaf_hashes(hashes))
    tree = timed(
        "root, level-cached tree (bulk build)", lambda: MerkleTree.from_leaf_hashes(hashes)
    )
    assert tree.root() == root_stream

    rnd = random.Random(1)
    latencies = []
    for _ in range(10_000):
        index = rnd.randrange(n)
        t0 = time.perf_counter()
        tree.inclusion_proof(index)
        latencies.append(time.perf_counter() - t0)
    latencies.sort()
    p50 = statistics.median(latencies) * 1e3
    p99 = latencies[int(len(latencies) * 0.99)] * 1e3
    print(
        f"{'inclusion proof latency (10,000 random leaves)':<52} p50 {p50:.3f} ms, p99 {p99:.3f} ms"
    )
    hashes.clear()
    tree = MerkleTree()

    signer = Ed25519NoteSigner.generate(ORIGIN)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "day.jsonl"
        day_tree = MerkleTree()

        # Two passes over a deterministic generator, so the day's events are never
        # all in memory at once (as in the service, which streams from its DB).
        timed(
            "encode + hash the day's events",
            lambda: day_tree.extend(leaf.leaf_hash() for leaf in leaves(n, 0)),
        )
        note = sign_checkpoint(Checkpoint(ORIGIN, day_tree.size, day_tree.root()), signer)
        header = DayExportHeader(DAY, ORIGIN, None, (), note)
        timed(
            "encode + write day export (streaming)",
            lambda: write_day_export(path, header, leaves(n, 0)),
        )
        rss_before_verify = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{'export size':<52} {path.stat().st_size / 2**20:8.1f} MiB")
        result = timed(
            "auditor verification, offline (steps 1-7)",
            lambda: verify_day_offline(path, signer.verifier()),
        )
        assert result.leaf_count == n

        if not args.no_chain:
            try:
                find_anvil()
            except AnvilError as e:
                print(f"chain step skipped: {e.message}")
            else:
                with AnvilProcess(Path(tmp) / "state.json") as node:
                    eth = SoftwareSecp256k1Signer.generate()
                    rpc_call(
                        node.rpc_url,
                        "anvil_setBalance",
                        [EthereumAccount(eth).address, hex(10**20)],
                    )

                    async def chain() -> None:
                        async with await AnchorClient.deploy(node.rpc_url, eth) as client:
                            await client.anchor(DAY, day_tree.root(), day_tree.size)
                            rpc_call(node.rpc_url, "anvil_mine", [hex(12)])
                            t0 = time.perf_counter()
                            await verify_day(path, signer.verifier(), client)
                            print(
                                f"{'auditor verification, with local anvil (1-9)':<52} "
                                f"{time.perf_counter() - t0:8.3f} s"
                            )

                    asyncio.run(chain())

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{'peak RSS before verification':<52} {rss_before_verify:8.0f} MiB")
    print(f"{'peak RSS overall':<52} {peak:8.0f} MiB")


if __name__ == "__main__":
    main()
