"""Days of the audit log: which day an instant belongs to, and a day's UTC bounds.

A checkpoint closes each day; days are calendar days in a fixed UTC offset
(default UTC+5, Kazakhstan — fixed because the country has no DST and a
fixed offset keeps old days stable even if the rules change). On chain a day is
the integer ``YYYYMMDD`` so it reads naturally in a block explorer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Final

from audit_chain.errors import AuditChainError

__all__ = [
    "DEFAULT_UTC_OFFSET",
    "DayClock",
    "day_from_number",
    "day_number",
    "format_offset",
    "parse_day",
    "parse_offset",
]

DEFAULT_UTC_OFFSET: Final = timedelta(hours=5)
_MAX_OFFSET: Final = timedelta(hours=14)


def day_number(day: date) -> int:
    """The on-chain key of a day: ``YYYYMMDD`` as an integer."""
    return day.year * 10000 + day.month * 100 + day.day


def day_from_number(number: int) -> date:
    try:
        return date(number // 10000, number // 100 % 100, number % 100)
    except ValueError as e:
        raise AuditChainError(f"{number} is not a YYYYMMDD day", code="day.invalid") from e


def parse_day(text: str) -> date:
    """Parse an ISO ``YYYY-MM-DD`` day."""
    try:
        if len(text) != 10:
            raise ValueError(text)
        return date.fromisoformat(text)
    except (ValueError, TypeError) as e:
        raise AuditChainError(f"{text!r} is not a YYYY-MM-DD day", code="day.invalid") from e


def format_offset(offset: timedelta) -> str:
    """``+05:00`` style."""
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    minutes = abs(minutes)
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def parse_offset(text: str) -> timedelta:
    try:
        if len(text) != 6 or text[0] not in "+-" or text[3] != ":":
            raise ValueError(text)
        hours, minutes = int(text[1:3]), int(text[4:6])
        if minutes >= 60:
            raise ValueError(text)
    except ValueError as e:
        raise AuditChainError(f"{text!r} is not a ±HH:MM offset", code="day.invalid") from e
    offset = timedelta(hours=hours, minutes=minutes)
    return -offset if text[0] == "-" else offset


@dataclass(frozen=True)
class DayClock:
    """Maps instants to days in a fixed UTC offset, and days to UTC intervals."""

    utc_offset: timedelta = DEFAULT_UTC_OFFSET

    def __post_init__(self) -> None:
        if not isinstance(self.utc_offset, timedelta) or abs(self.utc_offset) > _MAX_OFFSET:
            raise AuditChainError("UTC offset must be within ±14:00", code="day.invalid")
        if self.utc_offset % timedelta(minutes=1):
            raise AuditChainError("UTC offset must be whole minutes", code="day.invalid")

    @property
    def tz(self) -> timezone:
        return timezone(self.utc_offset)

    def day_of(self, instant: datetime) -> date:
        """The day an aware instant belongs to."""
        if instant.tzinfo is None:
            raise AuditChainError("instant must be timezone-aware", code="day.invalid")
        return instant.astimezone(self.tz).date()

    def bounds(self, day: date) -> tuple[datetime, datetime]:
        """The day as a half-open UTC interval ``[start, end)``."""
        start = datetime(day.year, day.month, day.day, tzinfo=self.tz).astimezone(UTC)
        return start, start + timedelta(days=1)

    def contains(self, day: date, instant: datetime) -> bool:
        start, end = self.bounds(day)
        return start <= instant < end
