"""The lockout's arithmetic on its own (the database side is tested through
HTTP in test_signing.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cloudsign.signing.factors import LockDecision, after_failure

NOW = datetime(2026, 12, 1, tzinfo=UTC)
LOCK = timedelta(minutes=15)


def test_failures_below_the_limit_only_count() -> None:
    for n in range(1, 5):
        assert after_failure(n, max_failed=5, now=NOW, lockout=LOCK) == LockDecision(n, None)


def test_the_limit_locks_and_starts_the_count_again() -> None:
    assert after_failure(5, max_failed=5, now=NOW, lockout=LOCK) == LockDecision(0, NOW + LOCK)
    # Parallel failures can overshoot the limit: they lock just the same.
    assert after_failure(7, max_failed=5, now=NOW, lockout=LOCK) == LockDecision(0, NOW + LOCK)
    assert after_failure(1, max_failed=1, now=NOW, lockout=LOCK).locked_until == NOW + LOCK
