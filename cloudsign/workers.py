"""`cloudsign serve --workers N`: N interchangeable service processes on one
machine, behind one port.

The supervisor initialises the data dir once, then starts N `cloudsign
serve --worker` children that all listen on the same public and operator
ports with `SO_REUSEPORT`: the kernel spreads connections over them, and
each is a whole service (its own HSM session, face pool and database pool)
sharing every piece of state through PostgreSQL and the HSM token, so any
of them can continue what another started. One of them leads the
background work (cloudsign/storage/leader.py).

A child that dies is started again (a crash loop gives up: five exits within
`CRASH_WINDOW` of their start stop the supervisor with an error). SIGINT or
SIGTERM stops the children gracefully; children die with the supervisor
even when it is killed (`setpriv --pdeathsig`). SQLite is one process by
design: more workers need PostgreSQL.

Between machines the same processes go behind a load balancer: see
`deploy/` (nginx and HAProxy configurations).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Final

from cloudsign.errors import ConfigurationError
from cloudsign.settings import ENV_PREFIX, Settings

log = logging.getLogger(__name__)

CRASH_WINDOW: Final = 10.0  # seconds: an exit this soon after start is a crash
MAX_CRASHES: Final = 5
STOP_GRACE: Final = 30.0
POLL: Final = 0.2


def check_workers(settings: Settings, workers: int) -> None:
    if workers < 1 or workers > 64:
        raise ConfigurationError("workers must be 1..64")
    if workers > 1 and not settings.effective_database_url.startswith("postgresql"):
        raise ConfigurationError(
            "more than one worker needs PostgreSQL (database_url): SQLite is the "
            "single-process embedded default"
        )


class Supervisor:
    def __init__(self, argv: Sequence[str], workers: int, env: dict[str, str]) -> None:
        self.argv = list(argv)
        self.workers = workers
        self.env = env
        self.children: list[subprocess.Popen[bytes] | None] = [None] * workers
        self.started: list[float] = [0.0] * workers
        self.crashes = 0
        self.stopping = False

    def _command(self) -> list[str]:
        cmd = [sys.executable, "-m", "cloudsign.cli", *self.argv, "serve", "--worker"]
        setpriv = shutil.which("setpriv")
        return [setpriv, "--pdeathsig", "TERM", "--", *cmd] if setpriv else cmd

    def _start(self, i: int) -> None:
        self.children[i] = subprocess.Popen(self._command(), env=self.env)  # noqa: S603
        self.started[i] = time.monotonic()
        log.info("worker %d started (pid %d)", i, self.children[i].pid)  # type: ignore[union-attr]

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.stopping = True

    def run(self) -> int:
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        for i in range(self.workers):
            self._start(i)
        code = 0
        while not self.stopping:
            time.sleep(POLL)
            for i, child in enumerate(self.children):
                if child is None or child.poll() is None or self.stopping:
                    continue
                lived = time.monotonic() - self.started[i]
                log.warning("worker %d (pid %d) exited with %s", i, child.pid, child.returncode)
                if lived < CRASH_WINDOW:
                    self.crashes += 1
                    if self.crashes >= MAX_CRASHES:
                        log.error("workers keep exiting at start-up; stopping")
                        self.stopping, code = True, 1
                        break
                self._start(i)
        self._stop_all()
        return code

    def _stop_all(self) -> None:
        alive = [c for c in self.children if c is not None and c.poll() is None]
        for child in alive:
            child.send_signal(signal.SIGINT)
        deadline = time.monotonic() + STOP_GRACE
        for child in alive:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def supervise(settings: Settings, workers: int, config: Path | None) -> int:
    """Initialise once, then run `workers` children until told to stop."""
    import asyncio

    from cloudsign.app import service_keys
    from cloudsign.instance import initialise

    check_workers(settings, workers)
    asyncio.run(initialise(settings, service_keys))
    argv = ["--data-dir", str(settings.data_dir)]
    if config is not None:
        argv = ["--config", str(config), *argv]
    env = dict(os.environ)
    if settings.hsm_pin is not None:
        # Read once from the environment (cli._settings dropped it there);
        # the children need it the same way, never on a command line.
        env[f"{ENV_PREFIX}HSM_PIN"] = settings.hsm_pin.reveal()
    return Supervisor(argv, workers, env).run()
