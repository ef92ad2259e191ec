"""Recovery of the once-only background work: two `cloudsign serve`
processes on one PostgreSQL database (a fresh one, dropped after) and one
anvil; events keep arriving (a row every `--every-ms` into the events table,
as any request's transaction appends them); the leader is killed with
SIGKILL, and the figure is the time from the kill to the next event
sequenced into the audit log (a new leaf), i.e. the successor taking the
advisory lock and running the sequencer. The killed process is started
again (it rejoins as a follower) and the next round kills the new leader.

Also printed per round: the time until the other process reports itself
leader on /metrics. Bounded: `--rounds` kills, loopback only.

Run: .venv/bin/python bench/bench_recovery.py [--rounds 5] [--every-ms 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audit_chain import AnvilProcess, find_anvil
from cloudsign.audit.tables import log_leaves
from cloudsign.events import EventType, NewEvent, append_events
from cloudsign.storage import Database
from tests.helpers import free_port
from tests.serving import serve, stop

PG_ADMIN = os.environ.get("CLOUDSIGN_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def leads(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return False
    for family in text_string_to_metric_families(text):
        if family.name == "cloudsign_background_leader":
            return family.samples[0].value == 1
    return False


async def _more(count: Callable[[], Awaitable[int]], than: int) -> bool:
    return await count() > than


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


async def until(condition: Callable[[], Awaitable[bool]], what: str, within: float = 120.0) -> None:
    """Poll `condition()` every 5 ms."""
    deadline = time.monotonic() + within
    while not await condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


def sync(check: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    return lambda: asyncio.to_thread(check)


async def main(rounds: int, every_ms: int) -> None:
    name = f"cloudsign_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    database_url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    with tempfile.TemporaryDirectory(prefix="cloudsign-bench-recovery-") as tmp:
        anvil = AnvilProcess(Path(tmp) / "chain" / "state.json", binary=find_anvil())
        anvil.start()
        env = {
            "CLOUDSIGN_DATABASE_URL": database_url,
            "CLOUDSIGN_CHAIN_RPC_URL": anvil.rpc_url,
            "CLOUDSIGN_FACE_WORKERS": "1",
        }
        data = Path(tmp) / "data"
        ports = [free_port(), free_port()]
        procs = [serve(data, ports[0], log=Path(tmp) / "a.log", **env)]
        db = Database(database_url)
        stop_events = asyncio.Event()

        async def produce() -> None:
            while not stop_events.is_set():
                async with db.transaction() as conn:
                    await append_events(
                        conn,
                        [NewEvent(EventType.AUTH_FAILURE, datetime.now(UTC), data={"bench": 1})],
                    )
                await asyncio.sleep(every_ms / 1000)

        async def leaves() -> int:
            async with db.read() as conn:
                return int(
                    (await conn.execute(select(func.count()).select_from(log_leaves))).scalar_one()
                )

        producer: asyncio.Task[None] | None = None
        try:
            # The first start initialises the data dir; the second shares it.
            await until(sync(lambda: healthy(ports[0])), "the first process")
            procs.append(serve(data, ports[1], log=Path(tmp) / "b.log", **env))
            await until(sync(lambda: healthy(ports[1])), "the second process")
            producer = asyncio.create_task(produce())
            to_event: list[float] = []
            to_leader: list[float] = []
            for i in range(rounds):
                await until(sync(lambda: leads(ports[0]) or leads(ports[1])), "a leader")
                leader = 0 if leads(ports[0]) else 1
                other = ports[1 - leader]
                before = await leaves()
                await until(lambda b=before: _more(leaves, b), "the log to grow")
                procs[leader].kill()
                killed_at = time.monotonic()
                procs[leader].wait(timeout=30)
                at_kill = await leaves()
                event_s = leader_s = 0.0
                deadline = killed_at + 120
                while not (event_s and leader_s):
                    if time.monotonic() > deadline:
                        raise SystemExit("no successor")
                    if not event_s and await leaves() > at_kill:
                        event_s = time.monotonic() - killed_at
                    if not leader_s and await asyncio.to_thread(leads, other):
                        leader_s = time.monotonic() - killed_at
                    await asyncio.sleep(0.005)
                to_event.append(event_s)
                to_leader.append(leader_s)
                print(
                    f"round {i + 1}: killed process {leader} (the leader); the other leads after "
                    f"{leader_s * 1e3:5.0f} ms, next sequenced event after {event_s * 1e3:5.0f} ms"
                )
                procs[leader] = serve(data, ports[leader], log=Path(tmp) / f"r{i}.log", **env)
                await until(sync(lambda p=ports[leader]: healthy(p)), "the restarted process")
            print(
                f"kill -9 of the leader -> next sequenced event, {rounds} rounds: "
                f"median {statistics.median(to_event) * 1e3:.0f} ms, "
                f"max {max(to_event) * 1e3:.0f} ms; to the new leader: median "
                f"{statistics.median(to_leader) * 1e3:.0f} ms "
                f"(events every {every_ms} ms, sequencer interval 500 ms by default)"
            )
        finally:
            stop_events.set()
            if producer is not None:
                with contextlib.suppress(BaseException):
                    await producer
            await db.close()
            for proc in procs:
                if proc.poll() is None:
                    stop(proc)
            anvil.kill()
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--every-ms", type=int, default=20)
    a = ap.parse_args()
    asyncio.run(main(a.rounds, a.every_ms))
