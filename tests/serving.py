"""`cloudsign serve` as a real child process, for the tests that need the
whole program: its start-up, its log, its death and its children."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import REPO

CLI = [sys.executable, "-m", "cloudsign.cli"]


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without this test run's CLOUDSIGN_/SOFTHSM2_ settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOUDSIGN_", "SOFTHSM2_"))}
    env.update(extra)
    return env


def serve(
    data_dir: Path, port: int, *args: str, log: Path | None = None, **env: str
) -> subprocess.Popen[bytes]:
    """`cloudsign serve` (with `args`, e.g. `--workers 2`); its output is
    kept for `stop`, or written to `log` (a busy server whose output nobody
    reads until the end must not fill a pipe)."""
    out = open(log, "ab") if log is not None else subprocess.PIPE  # noqa: SIM115
    proc = subprocess.Popen(
        [*CLI, "--data-dir", str(data_dir), "serve", *args],
        cwd=REPO,
        env=clean_env(
            **{
                "CLOUDSIGN_PORT": str(port),
                "CLOUDSIGN_CHAIN_ANVIL_PORT": "0",
                # Any free port: tests run several servers at once.
                "CLOUDSIGN_OPERATOR_PORT": "0",
                # Embedded anvil, SoftHSM2 and a generated PIN: a development instance.
                "CLOUDSIGN_DEVELOPMENT": "true",
                **env,
            }
        ),
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    if not isinstance(out, int):
        out.close()  # the child has its own copy
    return proc


def create_security_officer(
    data_dir: Path, env: dict[str, str], username: str, password: str
) -> str:
    """`cloudsign operator create-security-officer` (before the service
    starts: no event loop is waiting on it); returns the TOTP URI."""
    done = subprocess.run(
        [*CLI, "--data-dir", str(data_dir), "operator", "create-security-officer",
         "--username", username, "--display-name", username.title(), "--password-stdin"],
        cwd=REPO, env=clean_env(CLOUDSIGN_DEVELOPMENT="true", **env),
        input=password + "\n", capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    (uri,) = [line for line in done.stdout.splitlines() if line.startswith("otpauth://")]
    return uri


def wait_ready(proc: subprocess.Popen[bytes], port: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read().decode() if proc.stdout else ""
            pytest.fail(f"cloudsign serve exited with {proc.returncode}:\n{out}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    proc.kill()
    pytest.fail("cloudsign serve did not become ready")


def stop(proc: subprocess.Popen[bytes]) -> str:
    """Ctrl-C, as an operator would; returns everything the process printed."""
    proc.send_signal(signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out.decode() if out else ""


def children(pid: int) -> list[int]:
    """The pids whose parent is `pid` (from /proc)."""
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(entry.name))
    return kids
