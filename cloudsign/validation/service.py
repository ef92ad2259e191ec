"""The validation service: untrusted signatures validated in worker
processes with a time limit, against this CA's roots only.

Why processes and not the `DocumentWorker` thread signing uses: a thread
shares the GIL (a crafted PDF that makes pyHanko's parser spin for a minute
would slow every request) and cannot be stopped. A validation runs in a
`ProcessPoolExecutor` of warmed `spawn` workers; at most `workers` run at
once (a request waits for a free worker no longer than the time limit, then
503). One that passes the time limit gets its pool's processes killed and a
new pool in their place (422 for the request; any other validation that was
running on that pool is answered 503, retry); a worker that dies (a
segfault, the memory cap) is a 503 and the pool is replaced the same way.
The service itself keeps serving throughout: it only ever awaits the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import timedelta
from typing import Any, Final

from aiohttp import web
from asn1crypto import x509

from cloudsign.errors import BadRequestError, CloudsignError, ServiceUnavailableError
from cloudsign.guard import Limit
from cloudsign.settings import ValidationSettings
from cloudsign.validation.worker import Job, Refused, init_worker, ping, validate

log = logging.getLogger(__name__)

HOUR: Final = timedelta(hours=1)
#: Seconds a client is asked to wait after a busy or restarted worker pool.
RETRY_AFTER_SECONDS: Final = 2


class ValidationTimeoutError(CloudsignError):
    code = "validation_timeout"
    status = 422
    title = "Validation took too long"


class UnprocessableSignatureError(CloudsignError):
    code = "unprocessable_signature"
    status = 422
    title = "Signature not validated"

    def __init__(self, detail: str, reason: str) -> None:
        super().__init__(detail)
        self.reason = reason


class ValidationBusyError(ServiceUnavailableError):
    code = "validation_busy"
    title = "Validation workers busy"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.retry_after = RETRY_AFTER_SECONDS


class ValidationPool:
    """Warmed worker processes; `run(job)` is bounded by `timeout`."""

    def __init__(self, workers: int, timeout: timedelta) -> None:
        self.workers = workers
        #: The time limit of one validation (tests may lower it on a running service).
        self.timeout = timeout.total_seconds()
        self._slots = asyncio.Semaphore(workers)
        self._pool: ProcessPoolExecutor | None = None
        self._warming: asyncio.Future[Any] | None = None

    def __repr__(self) -> str:
        return f"ValidationPool(workers={self.workers}, timeout={self.timeout})"

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=init_worker,
            initargs=(os.getpid(),),
        )

    def start(self, *, prestart: bool) -> None:
        """The pool; with `prestart`, its workers spawn (and import pyHanko)
        now, in the background, so that start-up does not wait for them and
        the first request does not pay for them. Without, at first use."""
        self._pool = self._new_pool()
        if prestart:
            loop = asyncio.get_running_loop()
            # Submitted together, so each spawns its own worker.
            self._warming = asyncio.gather(
                *(loop.run_in_executor(self._pool, ping) for _ in range(self.workers))
            )

    async def close(self) -> None:
        warming, self._warming = self._warming, None
        if warming is not None and not warming.done():
            warming.cancel()
        if warming is not None:
            with contextlib.suppress(BaseException):
                await warming
        pool, self._pool = self._pool, None
        if pool is not None:
            _kill(pool)

    def _replace(self, pool: ProcessPoolExecutor) -> None:
        if self._pool is pool:
            self._pool = self._new_pool()
            _kill(pool)

    async def run(self, job: Job) -> dict[str, Any] | Refused:
        try:
            await asyncio.wait_for(self._slots.acquire(), self.timeout)
        except TimeoutError:
            raise ValidationBusyError("every validation worker is busy; retry shortly") from None
        try:
            pool = self._pool
            if pool is None:
                raise ServiceUnavailableError("the validation workers are not running")
            future = asyncio.get_running_loop().run_in_executor(pool, validate, job)
            try:
                return await asyncio.wait_for(future, self.timeout)
            except TimeoutError:
                log.warning("a validation passed its %.3g s limit; pool replaced", self.timeout)
                self._replace(pool)
                raise ValidationTimeoutError(
                    f"the input took longer than {self.timeout:g} s to validate"
                ) from None
            except BrokenProcessPool:
                log.warning("a validation worker died; worker pool replaced")
                self._replace(pool)
                raise ValidationBusyError("the validation worker stopped; retry shortly") from None
        finally:
            self._slots.release()


def _kill(pool: ProcessPoolExecutor) -> None:
    """Stop a pool now, whatever its workers are doing."""
    processes = list((pool._processes or {}).values())  # no public way to reach them
    for process in processes:
        if process.is_alive():
            process.kill()
    pool.shutdown(wait=False, cancel_futures=True)


class ValidationService:
    """Validates signatures against `trust_roots` (this CA's root) with the
    service's own certificates (`other_certs`: issuing CA, OCSP, TSA) as
    path-building help, fetching revocation data from `public_url` only.
    `limit` counts requests per client address (the guard's counters)."""

    def __init__(self, pool: ValidationPool, settings: ValidationSettings) -> None:
        self.pool = pool
        self.public_url = settings.public_url
        self.max_bytes = settings.max_bytes
        self.limit = Limit(
            "validation.address",
            settings.max_per_address_per_hour,
            HOUR,
            resets_on_success=False,
        )

    @classmethod
    async def start(cls, settings: ValidationSettings) -> ValidationService:
        pool = ValidationPool(settings.workers, settings.timeout)
        pool.start(prestart=settings.prestart)
        return cls(pool, settings)

    async def close(self) -> None:
        await self.pool.close()

    def __repr__(self) -> str:
        return f"ValidationService({self.public_url!r})"

    async def validate(
        self,
        signature: bytes,
        *,
        content: bytes | None,
        content_sha256: bytes | None,
        trust_roots: list[x509.Certificate],
        other_certs: list[x509.Certificate],
    ) -> dict[str, Any]:
        """An ETSI EN 319 102-1 shaped report (see worker.py)."""
        job = Job(
            signature=signature,
            content=content,
            content_sha256=content_sha256,
            trust_roots=tuple(c.dump() for c in trust_roots),
            other_certs=tuple(c.dump() for c in other_certs),
            fetch_prefix=self.public_url,
        )
        result = await self.pool.run(job)
        if isinstance(result, Refused):
            if result.code in ("no_signature", "unsupported"):
                raise UnprocessableSignatureError(result.detail, result.code)
            raise _Malformed(result.detail, result.code)
        return result


class _Malformed(BadRequestError):
    code = "malformed_signature"
    title = "Unreadable signature"

    def __init__(self, detail: str, reason: str) -> None:
        super().__init__(detail)
        self.reason = reason


#: The service, set by the composition root.
VALIDATION: Final = web.AppKey("validation", ValidationService)
