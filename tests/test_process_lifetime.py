"""The service's child processes live and die with it, and one hostile body
cannot kill it.

`cloudsign serve` runs as a real process with its real children: two face
workers, multiprocessing's resource tracker and the embedded anvil. After a
`kill -9` of the server none of them may survive, and a restart on the same
data dir and the same ports must come up with no manual step.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from tests.helpers import free_port
from tests.serving import serve, stop, wait_ready

T = TypeVar("T")


def _children(pid: int) -> dict[int, str]:
    """Direct children of `pid` and their command lines (from /proc)."""
    out: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            out[int(entry.name)] = cmdline
    return out


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _poll(probe: Callable[[], T], ok: Callable[[T], bool], within: float, what: str) -> T:
    deadline = time.monotonic() + within
    while True:
        value = probe()
        if ok(value):
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what} (last seen: {value})")
        time.sleep(0.1)


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        # As a listener binds: connections of a previous process left in
        # TIME_WAIT do not make the port taken, a listening socket does.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _family(pid: int) -> dict[int, str]:
    """Wait until the server has all its children: 2 face workers and the
    validation worker (spawned processes alike), the resource tracker and
    anvil."""

    def complete(kids: dict[int, str]) -> bool:
        cmds = list(kids.values())
        workers = sum("spawn_main" in c for c in cmds)
        tracker = any("resource_tracker" in c for c in cmds)
        anvil = any("anvil" in c for c in cmds)
        return workers == 3 and tracker and anvil

    return _poll(lambda: _children(pid), complete, 90, "the server's children did not all start")


def _post(port: int, path: str, body: bytes) -> tuple[int, bytes]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.fixture
def ports() -> tuple[int, int]:
    return free_port(), free_port()


@pytest.mark.slow
def test_kill_9_leaves_no_orphan_and_a_restart_comes_up(
    tmp_path: Path, ports: tuple[int, int]
) -> None:
    port, anvil_port = ports
    data = tmp_path / "data"
    env = {"CLOUDSIGN_CHAIN_ANVIL_PORT": str(anvil_port), "CLOUDSIGN_FACE_WORKERS": "2"}
    proc = serve(data, port, **env)
    try:
        wait_ready(proc, port)
        kids = _family(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        _poll(
            lambda: [pid for pid in kids if _alive(pid)],
            lambda alive: not alive,
            30,
            "children outlived the killed server",
        )
        _poll(lambda: _port_free(anvil_port), bool, 30, "the anvil port stayed taken")
    finally:
        if proc.poll() is None:
            proc.kill()

    # The same data dir and ports: it comes back by itself.
    proc = serve(data, port, **env)
    try:
        wait_ready(proc, port)
        kids = _family(proc.pid)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/log/keys", timeout=10) as r:
            assert json.loads(r.read())["anchor_address"].startswith("0x")
    finally:
        out = stop(proc)
    assert "Traceback" not in out, out
    _poll(
        lambda: [pid for pid in kids if _alive(pid)],
        lambda alive: not alive,
        30,
        "children outlived a graceful stop",
    )


@pytest.mark.slow
def test_one_deeply_nested_body_does_not_kill_the_process(
    tmp_path: Path, ports: tuple[int, int]
) -> None:
    """The 140 KB body that segfaulted the server (py_ecc had raised the
    recursion limit to 100,000), sent to the real program's unauthenticated
    JSON routes."""
    port, anvil_port = ports
    proc = serve(tmp_path / "data", port, CLOUDSIGN_CHAIN_ANVIL_PORT=str(anvil_port))
    try:
        wait_ready(proc, port)
        _family(proc.pid)  # anvil started: web3 and py_ecc are imported
        for path in (
            "/api/v1/activations",
            "/api/v1/sessions/challenge",
            "/api/v1/sessions",
            "/portal/session/activate",
            "/portal/session/login",
        ):
            for body in (b"[" * 70_000 + b"]" * 70_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000):
                status, answer = _post(port, path, body)
                assert status == 400, answer[:200]
                assert proc.poll() is None
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as r:
            assert r.status == 200
    finally:
        out = stop(proc)
    assert proc.returncode in (0, -signal.SIGINT), out
    assert "Traceback" not in out and "[[[[" not in out, out[-2000:]
