"""The service's one notion of "now".

Every service takes a `Clock`, a callable returning an aware UTC datetime,
instead of reading the system time itself: production passes `utc_now`,
tests pass a clock they move (TOTP steps, TTLs and audit days pass without
sleeping). The app's clock is `app[CLOCK]` (appkeys.py), set before start-up.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)
