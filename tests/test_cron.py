"""Schedules: Abaco's form and cron expressions, and what a missed schedule does."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from jobs.cron import parse_schedule
from jobs.errors import ValidationError

NOW = datetime(2026, 11, 29, 10, 37, tzinfo=UTC)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize("text, after, expected", [
    ("2026-12-01 14 + 3 hours", NOW, at("2026-12-01 14:00")),
    ("2026-12-01 14 + 3 hours", at("2026-12-01 14:00"), at("2026-12-01 17:00")),
    ("2026-12-01 14 + 3 hours", at("2026-12-02 09:30"), at("2026-12-02 11:00")),
    ("2026-11-01 00 + 1 day", NOW, at("2026-11-30 00:00")),
    ("2026-11-01 00 + 2 weeks", NOW, at("2026-12-13 00:00")),
    ("2026-01-31 06 + 1 month", NOW, at("2026-11-30 06:00")),
    ("2026-01-31 06 + 1 month", at("2027-02-01 00:00"), at("2027-02-28 06:00")),
    ("now + 1 hour", NOW, at("2026-11-29 11:00")),
    ("*/15 * * * *", NOW, at("2026-11-29 10:45")),
    ("0 3 * * 1", NOW, at("2026-11-30 03:00")),
])
def test_next_slot_is_strictly_after(text: str, after: datetime, expected: datetime):
    assert parse_schedule(text, NOW).next_after(after) == expected


def test_after_downtime_the_next_slot_is_after_now_not_the_missed_ones():
    schedule = parse_schedule("2026-01-01 00 + 1 hour", NOW)
    assert schedule.next_after(NOW) == at("2026-11-29 11:00")


@pytest.mark.parametrize("text, named", [
    ("tomorrow", "neither"), ("2026-13-01 10 + 1 hour", "not a date"),
    ("2026-12-01 10 + 0 hours", "at least 1"), ("61 * * * *", "not a valid cron"),
    ("2026-12-01 10 + 1 fortnight", "neither"),
])
def test_invalid_schedules_name_the_problem(text: str, named: str):
    with pytest.raises(ValidationError) as caught:
        parse_schedule(text, NOW)
    assert caught.value.message.startswith("cronSchedule") and named in caught.value.message
