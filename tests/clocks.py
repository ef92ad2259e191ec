"""The tests' TOTP clock (see tests/helpers.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime


class SteppingClock:
    """Real time plus an offset that only grows: `wait_until` jumps instead
    of sleeping. Callable (an aware UTC datetime) for the service's
    `TOTP_CLOCK`, `time()`/`wait_until()` for `device_client.StepClock`."""

    def __init__(self) -> None:
        self._offset = 0.0
        self._frozen: float | None = None
        self._lock = threading.Lock()

    def time(self) -> float:
        with self._lock:
            return self._now()

    def _now(self) -> float:
        return self._frozen if self._frozen is not None else time.time() + self._offset

    async def wait_until(self, moment: float) -> None:
        with self._lock:
            gap = moment - self._now()
            if gap > 0:
                if self._frozen is not None:
                    self._frozen += gap
                self._offset += gap

    @contextmanager
    def frozen(self) -> Iterator[None]:
        """Time stands still inside (jumps still move it), so a test can
        replay a code within its step however slow the machine is; after,
        time goes on from the frozen moment or later (it never goes back)."""
        with self._lock:
            self._frozen = self._now()
        try:
            yield
        finally:
            with self._lock:
                assert self._frozen is not None
                self._offset = max(self._offset, self._frozen - time.time())
                self._frozen = None

    def __call__(self) -> datetime:
        return datetime.fromtimestamp(self.time(), UTC)


TOTP_CLOCK = SteppingClock()
