"""Asyncio facade over a warmed process pool, for the aiohttp server.

Owns :class:`FaceWorkerPool`. dlib is CPU-bound and holds the GIL for long stretches,
so it never runs on the event loop nor in threads: each request is a picklable call of
a sync function of :mod:`biometrics.engine` in a worker *process*. Workers are created
with the ``spawn`` context by default (no inherited locks or event-loop state) and load
the models once, in the initializer, so requests never pay the ~1 s model load.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime
from types import TracebackType
from typing import Literal, Self, TypeVar

from biometrics import detection, engine
from biometrics.challenge import Challenge
from biometrics.errors import BiometricsError, InvalidInputError, WorkerBusyError, WorkerError
from biometrics.policy import DEFAULT_POLICY, BiometricsPolicy
from biometrics.template import FaceTemplate
from biometrics.verdict import Verdict

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Told of every finished call: `(operation, seconds from submission to answer)`.
CallObserver = Callable[[str, float], None]


#: How often a worker checks that the process that started it is alive.
PARENT_POLL_SECONDS = 0.5
_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int | None) -> None:
    """A worker must not outlive the service (a SIGKILL of the service would
    otherwise leave ~240 MB workers, and the resource tracker they keep
    alive, running). Two guards: on Linux the kernel sends SIGKILL when the
    parent goes (`PR_SET_PDEATHSIG`); everywhere, a thread notices the worker
    was re-parented and exits."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_POLL_SECONDS)
        os._exit(0)

    if parent_pid is None:  # forkserver: the parent is the fork server itself
        parent_pid = os.getppid()
    elif os.getppid() != parent_pid:  # the parent died before the guard was set
        os._exit(0)
    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _init_worker(parent_pid: int | None) -> None:
    _die_with_parent(parent_pid)
    detection.warm_up()


def _ping() -> bool:
    detection.warm_up()
    return True


class FaceWorkerPool:
    """``async with FaceWorkerPool(workers=2) as pool: verdict = await pool.verify(...)``.

    ``max_pending`` bounds queued + running calls; beyond it calls fail fast with
    :class:`WorkerBusyError` (code ``worker_busy``) instead of queueing unboundedly.
    """

    def __init__(
        self,
        policy: BiometricsPolicy = DEFAULT_POLICY,
        *,
        workers: int = 2,
        max_pending: int = 32,
        context: Literal["spawn", "forkserver"] = "spawn",
    ) -> None:
        if not isinstance(policy, BiometricsPolicy):
            raise InvalidInputError("policy must be a BiometricsPolicy")
        if not 1 <= workers <= 64 or max_pending < workers:
            raise InvalidInputError("need 1 <= workers <= 64 and max_pending >= workers")
        if context not in ("spawn", "forkserver"):
            raise InvalidInputError("context must be 'spawn' or 'forkserver'")
        self.policy = policy
        self.workers = workers
        self._context = context
        self._max_pending = max_pending
        self._pending = 0
        self._executor: ProcessPoolExecutor | None = None
        self.observer: CallObserver | None = None

    @property
    def ready(self) -> bool:
        """Started, and no worker has died since (a dead worker breaks a
        :class:`ProcessPoolExecutor` for good; the service must restart)."""
        return self._executor is not None and not getattr(self._executor, "_broken", False)

    @property
    def pending(self) -> int:
        """Calls queued or running now."""
        return self._pending

    @property
    def running(self) -> bool:
        return self._executor is not None

    async def start(self) -> None:
        """Start the workers and wait until every one has its models loaded."""
        if self._executor is not None:
            return
        self._executor = ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context(self._context),
            initializer=_init_worker,
            # spawn: the service is the parent; forkserver: the fork server is.
            initargs=(os.getpid() if self._context == "spawn" else None,),
        )
        loop = asyncio.get_running_loop()
        try:
            # Submitted together, so each one spawns (and warms) its own worker.
            await asyncio.gather(
                *(loop.run_in_executor(self._executor, _ping) for _ in range(self.workers))
            )
        except BaseException as e:
            await self.close()
            raise WorkerError("face workers failed to start") from e
        log.info("face worker pool started: %d workers (%s)", self.workers, self._context)

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _run(self, fn: Callable[[], T]) -> T:
        if self._executor is None:
            raise WorkerError("FaceWorkerPool is not started")
        if self._pending >= self._max_pending:
            raise WorkerBusyError("face workers are saturated")
        self._pending += 1
        started = time.perf_counter()
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn)
        except BiometricsError:
            raise
        except BrokenProcessPool as e:
            raise WorkerError("a face worker died") from e
        except (asyncio.CancelledError, KeyboardInterrupt):
            raise
        except Exception as e:  # e.g. a pickling error: never leak builtins
            raise WorkerError(f"face worker call failed: {type(e).__name__}") from e
        finally:
            self._pending -= 1
            if self.observer is not None:
                name = getattr(getattr(fn, "func", fn), "__name__", "call")
                self.observer(name, time.perf_counter() - started)

    async def enrol(self, images: Sequence[bytes]) -> FaceTemplate:
        return await self._run(functools.partial(engine.enrol, list(images), self.policy))

    async def enrol_frames(self, frames: Sequence[bytes]) -> FaceTemplate:
        return await self._run(functools.partial(engine.enrol_frames, list(frames), self.policy))

    async def enrol_live(
        self,
        frames: Sequence[bytes],
        challenge: Challenge,
        *,
        now: datetime | None = None,
    ) -> tuple[Verdict, FaceTemplate | None]:
        return await self._run(
            functools.partial(
                engine.enrol_live, list(frames), challenge, now=now, policy=self.policy
            )
        )

    async def match(self, template: FaceTemplate, image: bytes) -> Verdict:
        return await self._run(functools.partial(engine.match, template, image, self.policy))

    async def verify(
        self,
        template: FaceTemplate,
        frames: Sequence[bytes],
        challenge: Challenge,
        *,
        now: datetime | None = None,
    ) -> Verdict:
        return await self._run(
            functools.partial(
                engine.verify, template, list(frames), challenge, now=now, policy=self.policy
            )
        )
