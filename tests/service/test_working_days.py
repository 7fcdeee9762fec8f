"""Deadlines counted in working days."""

from __future__ import annotations

import datetime as dt

from gateway.service.working_days import WorkingDays, day_start_ms


def _ms(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp() * 1000)


def test_a_deadline_skips_weekends_and_keeps_the_time_of_day() -> None:
    days = WorkingDays()
    friday = _ms("2026-11-27T10:30:00")
    assert days.add(friday, 1) == _ms("2026-11-30T10:30:00")  # Monday
    assert days.add(friday, 5) == _ms("2026-12-04T10:30:00")
    # 20 working days are four weeks, whatever day they start on.
    monday = _ms("2026-11-30T09:00:00")
    assert days.add(monday, 20) == _ms("2026-12-28T09:00:00")
    saturday = _ms("2026-11-28T12:00:00")
    assert days.add(saturday, 1) == _ms("2026-11-30T12:00:00")


def test_holidays_are_not_working_days() -> None:
    days = WorkingDays(["2026-12-24", "2026-12-25"])
    assert days.add(_ms("2026-12-23T08:00:00"), 1) == _ms("2026-12-28T08:00:00")
    assert days.add(_ms("2026-11-30T09:00:00"), 20) == _ms("2026-12-30T09:00:00")


def test_working_days_between_two_instants() -> None:
    days = WorkingDays()
    assert days.between(_ms("2026-11-27T10:00:00"), _ms("2026-11-30T10:00:00")) == 1
    assert days.between(_ms("2026-11-30T10:00:00"), _ms("2026-11-27T10:00:00")) == -1
    assert days.between(_ms("2026-11-30T10:00:00"), _ms("2026-11-30T18:00:00")) == 0
    assert day_start_ms("2026-12-01") == _ms("2026-12-01T00:00:00")
