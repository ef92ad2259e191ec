"""Several `cloudsign serve` processes on one PostgreSQL database and one
chain: exactly one leads the once-only background work; `kill -9` of the
leader hands it to another within seconds; a restarted process rejoins as a
follower without manual steps."""

from __future__ import annotations

import asyncio
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from audit_chain import AnvilProcess, find_anvil
from tests.helpers import PG_ADMIN_DSN, free_port, pg_create, pg_drop
from tests.serving import serve, stop, wait_ready


def _gauge(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    for family in text_string_to_metric_families(text):
        if family.name == name:
            return family.samples[0].value
    raise AssertionError(f"no {name}")


def _leader(port: int) -> float:
    return _gauge(port, "cloudsign_background_leader")


def _wait_for(condition: Callable[[], bool], what: str, within: float = 60.0) -> float:
    """Seconds until `condition()` held (polled every 50 ms)."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        if condition():
            return time.monotonic() - started
        time.sleep(0.05)
    pytest.fail(f"timed out: {what}")


@pytest.mark.slow
def test_one_leader_among_processes_and_a_successor_after_kill_9(tmp_path: Path) -> None:
    name = f"cloudsign_scale_{uuid.uuid4().hex[:8]}"
    asyncio.run(pg_create(name))
    anvil = AnvilProcess(tmp_path / "chain" / "state.json", binary=find_anvil(), state_interval=1)
    anvil.start()
    base = PG_ADMIN_DSN.rsplit("/", 1)[0]
    env = {
        "CLOUDSIGN_DATABASE_URL": f"{base}/{name}",
        "CLOUDSIGN_CHAIN_RPC_URL": anvil.rpc_url,
        "CLOUDSIGN_FACE_WORKERS": "1",
    }
    data = tmp_path / "data"
    ports = [free_port(), free_port()]
    procs = []
    try:
        # The first start initialises the data dir; the second shares it.
        procs.append(serve(data, ports[0], **env))
        wait_ready(procs[0], ports[0])
        procs.append(serve(data, ports[1], **env))
        wait_ready(procs[1], ports[1])
        assert _leader(ports[0]) == 1
        assert _leader(ports[1]) == 0

        procs[0].kill()  # SIGKILL: no clean-up, its database session just ends
        procs[0].wait(timeout=30)
        took = _wait_for(lambda: _leader(ports[1]) == 1, "the follower to lead", 30)
        print(f"leader replaced {took:.2f} s after kill -9")

        # The killed process comes back by itself, and follows.
        procs[0] = serve(data, ports[0], **env)
        wait_ready(procs[0], ports[0])
        _wait_for(
            lambda: _gauge(ports[0], "cloudsign_background_leader_attempts") >= 3,
            "several lock attempts of the restarted process",
        )
        assert _leader(ports[0]) == 0
        assert _leader(ports[1]) == 1
        with urllib.request.urlopen(f"http://127.0.0.1:{ports[0]}/readyz", timeout=10) as r:
            assert r.status == 200
    finally:
        for proc in procs:
            if proc.poll() is None:
                stop(proc)
        anvil.kill()
        asyncio.run(pg_drop(name))
