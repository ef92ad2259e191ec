"""Benchmark of the audit log service (cloudsign/audit). Prints figures; not a test.

    .venv/bin/python bench/bench_audit_service.py [--events N] [--backends sqlite,postgresql]

Per backend (PostgreSQL at 127.0.0.1:5432 as postgres; a database is created
and dropped): append throughput (one event per transaction, 16 writers),
append + sequencing together (writers and the sequencer running at once, until
every event is a leaf), sequencing of a backlog, the day close, and inclusion
bundle latency from the database. Then, in memory: the tree rebuilt from
1,000,000 leaf hashes (start-up) and its root, and proof latency at that size.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp import web

from audit_chain import MerkleTree
from cloudsign import app as app_module
from cloudsign.appkeys import AUDIT_LOG, CLOCK, DATABASE, SETTINGS
from cloudsign.audit import AuditLog
from cloudsign.events import EventType, append_event
from cloudsign.instance import initialise
from cloudsign.settings import load_settings
from cloudsign.storage.schema import events

PG_ADMIN = os.environ.get("CLOUDSIGN_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
WRITERS = 16
OWNERS = 1000


class Clock:
    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


def percentile(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


async def run_backend(backend: str, data_dir: Path, n: int) -> None:
    pg_name = None
    if backend == "postgresql":
        pg_name = f"cloudsign_bench_{secrets.token_hex(4)}"
        conn = await asyncpg.connect(PG_ADMIN)
        await conn.execute(f'CREATE DATABASE "{pg_name}"')
        await conn.close()
        url = f"{PG_ADMIN.rsplit('/', 1)[0]}/{pg_name}"
    else:
        url = f"sqlite:///{data_dir / 'bench.db'}"
    settings = load_settings(
        env={},
        data_dir=data_dir,
        database_url=url,
        audit_background_tasks=False,
        chain_rpc_url="http://127.0.0.1:9",
        audit_sequence_batch=5000,
    )
    clock = Clock()
    app = web.Application()
    app[SETTINGS] = settings
    app[CLOCK] = clock
    app.cleanup_ctx.extend(
        [app_module._database, app_module._hsm, app_module._http_client, app_module._audit]
    )
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        db = app[DATABASE]
        log: AuditLog = app[AUDIT_LOG]
        rnd = random.Random(1)
        owner_ids = [f"owner-{i:06d}" for i in range(OWNERS)]

        async def writer(count: int) -> None:
            for _ in range(count):
                async with db.transaction() as conn:
                    await append_event(
                        conn,
                        EventType.KEY_USE,
                        owner_id=rnd.choice(owner_ids),
                        credential_id="cred-1",
                        data={"document_sha256": secrets.token_hex(32), "scheme": "pades"},
                        at=clock(),
                    )

        # 1. append only
        t0 = time.perf_counter()
        await asyncio.gather(*(writer(n // WRITERS) for _ in range(WRITERS)))
        appended = n // WRITERS * WRITERS
        dt = time.perf_counter() - t0
        print(f"[{backend}] append, 1 event/txn, {WRITERS} writers: {appended / dt:,.0f} events/s")

        # 2. sequencing a backlog
        t0 = time.perf_counter()
        done = await log.sequence_pending()
        dt = time.perf_counter() - t0
        print(f"[{backend}] sequencing a backlog of {done:,}: {done / dt:,.0f} events/s")

        # 3. append + sequencing at once, until all are leaves
        stop = asyncio.Event()

        async def sequencer() -> None:
            while not stop.is_set():
                if not await log.sequence_pending():
                    await asyncio.sleep(0.01)

        t0 = time.perf_counter()
        seq_task = asyncio.create_task(sequencer())
        await asyncio.gather(*(writer(n // WRITERS) for _ in range(WRITERS)))
        stop.set()
        await seq_task
        await log.sequence_pending()
        dt = time.perf_counter() - t0
        total = log.tree.size
        print(
            f"[{backend}] append + sequencing together: {appended / dt:,.0f} events/s "
            f"(tree size {total:,})"
        )

        # 4. bulk backlog (multi-row inserts) then sequencing alone
        async with db.transaction() as conn:
            now = datetime.now(UTC)
            await conn.execute(
                events.insert(),
                [
                    {
                        "event_type": "key.use",
                        "occurred_at": now,
                        "owner_id": rnd.choice(owner_ids),
                        "credential_id": None,
                        "data": {"document_sha256": secrets.token_hex(32)},
                    }
                    for _ in range(n)
                ],
            )
        t0 = time.perf_counter()
        done = await log.sequence_pending()
        dt = time.perf_counter() - t0
        print(f"[{backend}] sequencing {done:,} bulk-inserted events: {done / dt:,.0f} events/s")

        # 5. day close and proofs from the database
        clock.offset = timedelta(days=1)
        t0 = time.perf_counter()
        closed = await log.close_due_days()
        print(
            f"[{backend}] day close (size {closed[-1].tree_size:,}, HSM-signed): "
            f"{(time.perf_counter() - t0) * 1000:.1f} ms"
        )
        size = closed[-1].tree_size
        latencies = []
        for _ in range(500):
            index = rnd.randrange(size)
            t0 = time.perf_counter()
            await log.inclusion_bundle(index)
            latencies.append((time.perf_counter() - t0) * 1000)
        print(
            f"[{backend}] inclusion bundle (DB + tree): p50 {statistics.median(latencies):.2f} ms,"
            f" p99 {percentile(latencies, 99):.2f} ms"
        )
        t0 = time.perf_counter()
        await log.start()
        print(
            f"[{backend}] start-up tree rebuild from {log.tree.size:,} stored hashes: "
            f"{(time.perf_counter() - t0) * 1000:.0f} ms"
        )
    finally:
        await runner.cleanup()
        if pg_name is not None:
            conn = await asyncpg.connect(PG_ADMIN)
            await conn.execute(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')
            await conn.close()


def in_memory(million: int) -> None:
    hashes = [secrets.token_bytes(32) for _ in range(million)]
    t0 = time.perf_counter()
    tree = MerkleTree.from_leaf_hashes(hashes)
    root = tree.root()
    dt = time.perf_counter() - t0
    print(f"[memory] day root over {million:,} leaves (tree build + root): {dt:.2f} s")
    assert len(root) == 32
    rnd = random.Random(2)
    lat = []
    for _ in range(2000):
        i = rnd.randrange(million)
        t0 = time.perf_counter()
        tree.inclusion_proof(i)
        lat.append((time.perf_counter() - t0) * 1000)
    print(
        f"[memory] inclusion proof at {million:,}: p50 {statistics.median(lat):.3f} ms, "
        f"p99 {percentile(lat, 99):.3f} ms"
    )


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="cloudsign-bench-") as tmp:
        data_dir = Path(tmp)
        await initialise(load_settings(env={}, data_dir=data_dir))
        for backend in args.backends.split(","):
            await run_backend(backend, data_dir, args.events)
    in_memory(args.leaves)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--leaves", type=int, default=1_000_000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    args: Any = parser.parse_args()
    asyncio.run(main(args))
