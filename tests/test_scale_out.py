"""Several `cloudsign serve` processes on one PostgreSQL database and one
chain: exactly one leads the once-only background work; `kill -9` of the
leader hands it to another within seconds; a restarted process rejoins as a
follower without manual steps."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from audit_chain import AnvilProcess, find_anvil
from tests.helpers import PG_ADMIN_DSN, REPO, free_port, pg_create, pg_drop
from tests.serving import CLI, clean_env, serve, stop, wait_ready


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


@pytest.mark.slow
def test_workers_started_together_on_a_fresh_data_dir_share_one_set_of_keys(
    tmp_path: Path,
) -> None:
    """`serve --workers 2` on a data dir nothing has initialised: the
    supervisor makes the services' long-lived HSM keys before the workers
    start, so the workers find one of each instead of each making its own
    (after which every start failed on two keys of one label)."""
    name = f"cloudsign_fresh_{uuid.uuid4().hex[:8]}"
    asyncio.run(pg_create(name))
    base = PG_ADMIN_DSN.rsplit("/", 1)[0]
    port = free_port()
    log = tmp_path / "serve.log"
    proc = serve(
        tmp_path / "data",
        port,
        "--workers",
        "2",
        log=log,
        CLOUDSIGN_DATABASE_URL=f"{base}/{name}",
        CLOUDSIGN_CHAIN_RPC_URL="http://127.0.0.1:9",
        CLOUDSIGN_FACE_WORKERS="1",
    )
    try:
        wait_ready(proc, port)
        ready = 0
        deadline = time.monotonic() + 120
        while ready < 20 and time.monotonic() < deadline:  # both workers answer
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as r:
                    ready = ready + 1 if r.status == 200 else 0
            except OSError:
                ready = 0
                time.sleep(0.1)
        assert ready >= 20, log.read_text()[-4000:]
        text = log.read_text()
        assert "MultipleObjectsReturned" not in text, text[-4000:]
        assert "exited with" not in text, text[-4000:]  # no worker died and was restarted
    finally:
        stop(proc)
        asyncio.run(pg_drop(name))


_HAS_KEYS = """
import asyncio, sys
from pathlib import Path
from cloudsign.instance import prepare_hsm
from cloudsign.settings import load_settings
from hsm_bridge import HsmBridge

async def main() -> None:
    access = prepare_hsm(load_settings(env={}, data_dir=Path(sys.argv[1])))
    bridge = HsmBridge(access.module, access.token_label, access.pin)
    await bridge.start()
    try:
        for label in sys.argv[2:]:
            print(label, await bridge.has_key(label))
    finally:
        await bridge.close()

asyncio.run(main())
"""


def _init(data: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "--data-dir", str(data), "init"],
        cwd=REPO,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_init_makes_the_services_long_lived_keys_before_any_process_starts(
    tmp_path: Path,
) -> None:
    """The keys every process would otherwise create at its first start
    (the race above) exist once `cloudsign init` (or the supervisor of
    `serve --workers`) has run."""
    data = tmp_path / "data"
    init = _init(data)
    assert init.returncode == 0, init.stderr
    labels = ["ocsp-responder", "tsa-unit", "cloudsign-audit-log", "cloudsign-audit-eth"]
    assert "generated service keys in the HSM: " + ", ".join(labels) in init.stdout
    found = subprocess.run(
        [sys.executable, "-c", _HAS_KEYS, str(data), *labels],
        cwd=REPO,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert found.returncode == 0, found.stderr
    assert found.stdout.split() == [w for label in labels for w in (label, "True")]
    again = _init(data)
    assert again.returncode == 0 and "generated service keys" not in again.stdout
