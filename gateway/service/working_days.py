"""Deadlines counted in working days (Monday to Friday, less public holidays), in UTC.

The Commission's specification of a gatekeeper's interoperability request process
(DMA.100204) counts the eligibility answer in working days; a deadline `n` working days after
an instant falls at the same time of day on the n-th working day that follows it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

_DAY = dt.timedelta(days=1)


class WorkingDays:
    """Working-day arithmetic over a set of holidays (`YYYY-MM-DD`)."""

    def __init__(self, holidays: Iterable[str] = ()) -> None:
        self._holidays = frozenset(dt.date.fromisoformat(day) for day in holidays)

    def is_working_day(self, day: dt.date) -> bool:
        return day.weekday() < 5 and day not in self._holidays

    def add(self, start_ms: int, days: int) -> int:
        """The instant `days` working days after `start_ms` (same time of day)."""
        at = dt.datetime.fromtimestamp(start_ms / 1000, dt.UTC)
        left = days
        while left > 0:
            at += _DAY
            if self.is_working_day(at.date()):
                left -= 1
        return int(at.timestamp() * 1000)

    def between(self, start_ms: int, end_ms: int) -> int:
        """Working days from `start_ms` to `end_ms`, negative when `end_ms` is earlier."""
        if end_ms < start_ms:
            return -self.between(end_ms, start_ms)
        day = dt.datetime.fromtimestamp(start_ms / 1000, dt.UTC).date()
        end = dt.datetime.fromtimestamp(end_ms / 1000, dt.UTC).date()
        count = 0
        while day < end:
            day += _DAY
            if self.is_working_day(day):
                count += 1
        return count


def day_start_ms(day: str) -> int:
    """Midnight UTC of `YYYY-MM-DD`, in milliseconds; ValueError when it is not a date."""
    date = dt.date.fromisoformat(day)
    return int(dt.datetime(date.year, date.month, date.day, tzinfo=dt.UTC).timestamp() * 1000)
