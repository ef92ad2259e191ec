"""A local anvil node as a managed child process, with its chain state on disk.

This module owns starting, waiting for, stopping and killing anvil (Foundry's
dev node, v1.7.x). The service uses it as its embedded default chain and the
tests use it as a real chain. State persists through ``--state FILE`` (load at
start, dump at exit) plus ``--state-interval N`` (dump every N seconds), so a
hard kill loses at most the last interval; ``--preserve-historical-states``
keeps older block states so reads at past blocks still work after a restart.

The binary is found via ``$AUDIT_CHAIN_ANVIL``, then ``anvil`` on ``PATH``, then
the npm package ``@foundry-rs/anvil-linux-amd64`` in a ``node_modules`` folder
of the current directory or one of its parents.

anvil dies with the process that started it: on Linux it is started through
util-linux's ``setpriv --pdeathsig TERM``, so when its parent dies (even by
SIGKILL) the kernel sends it SIGTERM and it dumps its state and exits,
leaving no orphan holding the port. The death signal follows the *thread*
that forked, so call :meth:`AnvilProcess.launch` from a thread that lives as
long as the process (an event loop's); :meth:`AnvilProcess.wait_ready` may
run anywhere.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final

from audit_chain.errors import AnvilError

__all__ = ["ANVIL_ENV", "AnvilProcess", "find_anvil", "free_port", "rpc_call"]

ANVIL_ENV: Final = "AUDIT_CHAIN_ANVIL"
_NPM_BINARY: Final = Path("node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil")
DEFAULT_START_TIMEOUT: Final = 30.0
DEFAULT_STOP_TIMEOUT: Final = 10.0


def find_anvil() -> Path:
    """Locate the anvil binary or raise ``anvil.missing`` saying where it looked."""
    looked: list[str] = []
    env = os.environ.get(ANVIL_ENV)
    if env:
        if Path(env).is_file() and os.access(env, os.X_OK):
            return Path(env)
        looked.append(f"${ANVIL_ENV}={env}")
    on_path = shutil.which("anvil")
    if on_path:
        return Path(on_path)
    looked.append("PATH")
    here = Path.cwd().resolve()
    for directory in (here, *here.parents):
        candidate = directory / _NPM_BINARY
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    looked.append(f"{_NPM_BINARY} in {here} and its parents")
    raise AnvilError(
        "anvil binary not found (looked in " + "; ".join(looked) + "). Install it with "
        "`npm install` (package @foundry-rs/anvil) or set " + ANVIL_ENV,
        code="anvil.missing",
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free at the time of the call."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def rpc_call(url: str, method: str, params: list[Any] | None = None, timeout: float = 5.0) -> Any:
    """A minimal blocking JSON-RPC call (readiness probes, anvil_* test methods)."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []})
    request = urllib.request.Request(  # noqa: S310 - the URL is our own loopback node
        url, data=body.encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            answer = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise AnvilError(f"{method} failed: {e}", code="anvil.rpc") from e
    if "error" in answer:
        raise AnvilError(f"{method} failed: {answer['error']}", code="anvil.rpc")
    return answer.get("result")


class AnvilProcess:
    """One anvil child process.

    ``state_path`` is the ``--state`` file (created on first dump); reuse it to
    restart the same chain. ``block_time=None`` mines a block per transaction.
    """

    def __init__(
        self,
        state_path: str | os.PathLike[str] | None = None,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        state_interval: int = 1,
        chain_id: int = 31337,
        block_time: float | None = None,
        binary: str | os.PathLike[str] | None = None,
        log_path: str | os.PathLike[str] | None = None,
        extra_args: tuple[str, ...] = (),
        die_with_parent: bool = True,
    ) -> None:
        self.state_path = Path(state_path) if state_path is not None else None
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.state_interval = state_interval
        self.chain_id = chain_id
        self.block_time = block_time
        self.binary = Path(binary) if binary is not None else None
        self.log_path = Path(log_path) if log_path is not None else None
        self.extra_args = extra_args
        self.die_with_parent = die_with_parent
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def rpc_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def command(self) -> list[str]:
        binary = self.binary or find_anvil()
        cmd = [
            str(binary),
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--chain-id",
            str(self.chain_id),
        ]
        if self.state_path is not None:
            cmd += [
                "--state",
                str(self.state_path),
                "--state-interval",
                str(self.state_interval),
                "--preserve-historical-states",
            ]
        if self.block_time is not None:
            cmd += ["--block-time", str(self.block_time)]
        return [*cmd, *self.extra_args]

    def start(self, timeout: float = DEFAULT_START_TIMEOUT) -> AnvilProcess:
        """Start anvil and block until it answers ``eth_chainId``."""
        if not self.running():
            self.launch()
        return self.wait_ready(timeout)

    def launch(self) -> AnvilProcess:
        """Start the process (quick: fork and exec); :meth:`wait_ready` follows."""
        if self.running():
            return self
        cmd = self.command()
        setpriv = shutil.which("setpriv") if self.die_with_parent else None
        if setpriv is not None:
            cmd = [setpriv, "--pdeathsig", "TERM", "--", *cmd]
        if self.state_path is not None:
            self.state_path.parent.mkdir(parents=True, exist_ok=True)
        log_target: IO[bytes] | int = subprocess.DEVNULL
        if self.log_path is not None:
            self._log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
            log_target = self._log
        try:
            self._process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                cmd, stdout=log_target, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        except OSError as e:
            raise AnvilError(f"cannot run {cmd[0]}: {e}", code="anvil.start_failed") from e
        return self

    def wait_ready(self, timeout: float = DEFAULT_START_TIMEOUT) -> AnvilProcess:
        """Block until the launched anvil answers ``eth_chainId``."""
        if self._process is None:
            raise AnvilError("anvil was not launched", code="anvil.start_failed")
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                code = self._process.returncode
                self._process = None
                raise AnvilError(
                    f"anvil exited with {code} during start-up (port {self.port} taken?"
                    f" see {self.log_path or 'log_path'})",
                    code="anvil.start_failed",
                )
            with contextlib.suppress(AnvilError):
                if int(rpc_call(self.rpc_url, "eth_chainId", timeout=1.0), 16) == self.chain_id:
                    return self
            if time.monotonic() > deadline:
                self.kill()
                raise AnvilError(
                    f"anvil did not answer on {self.rpc_url} within {timeout}s",
                    code="anvil.start_failed",
                )
            time.sleep(0.05)

    def dumped_block(self) -> int | None:
        """The newest block in the state file (what a hard kill would keep),
        or None before the first dump."""
        if self.state_path is None:
            return None
        try:
            state = json.loads(self.state_path.read_text())
        except (OSError, ValueError):  # not written yet, or caught mid-write
            return None
        number = state.get("best_block_number") if isinstance(state, dict) else None
        return number if isinstance(number, int) else None

    def wait_for_dump(self, block: int, timeout: float = DEFAULT_START_TIMEOUT) -> None:
        """Block until the state file holds `block` (anvil dumps every
        `state_interval` seconds)."""
        deadline = time.monotonic() + timeout
        while (self.dumped_block() or -1) < block:
            if time.monotonic() > deadline:
                raise AnvilError(
                    f"anvil did not dump block {block} within {timeout}s", code="anvil.state"
                )
            time.sleep(0.05)

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
        """Graceful stop (SIGTERM): anvil dumps its state before exiting."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._cleanup()

    def kill(self) -> None:
        """Hard kill (SIGKILL): no final dump; the last periodic dump survives."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.kill()
            process.wait()
        self._cleanup()

    def _cleanup(self) -> None:
        self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> AnvilProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
