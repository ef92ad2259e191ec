"""The tests' TOTP clock (see tests/helpers.py)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime


class SteppingClock:
    """Real time plus an offset that only grows: `wait_until` jumps instead
    of sleeping. Callable (an aware UTC datetime) for the service's
    `TOTP_CLOCK`, `time()`/`wait_until()` for `device_client.StepClock`."""

    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()

    def time(self) -> float:
        with self._lock:
            return time.time() + self._offset

    async def wait_until(self, moment: float) -> None:
        with self._lock:
            gap = moment - (time.time() + self._offset)
            if gap > 0:
                self._offset += gap

    def __call__(self) -> datetime:
        return datetime.fromtimestamp(self.time(), UTC)


TOTP_CLOCK = SteppingClock()
