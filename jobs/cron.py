"""Actor schedules (``cronSchedule``): Abaco's form and five-field cron expressions.

Abaco's form is ``"YYYY-MM-DD HH + N unit"``: a start hour (UTC) or ``now``, then a
period of N hours, days, weeks or months (singular or plural). A five-field cron
expression (``"*/5 * * * *"``, UTC) is handed to croniter, a well-kept parser.

``next_after(moment)`` is the first slot strictly after ``moment``: the scheduler
fires a due schedule once and moves it past *now*, so after downtime a missed
schedule runs once, not once per missed slot.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from croniter import CroniterError, croniter

from jobs.errors import ValidationError

FIELD = "cronSchedule"
_ABACO = re.compile(r"^\s*(now|\d{4}-\d{2}-\d{2} \d{1,2})\s*\+\s*(\d+)\s+"
                    r"(hour|day|week|month)s?\s*$", re.IGNORECASE)
_UNITS = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(weeks=1)}


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule; ``start`` anchors Abaco's form (None for cron expressions)."""

    text: str
    start: datetime | None = None
    count: int = 0
    unit: str = ""

    def next_after(self, moment: datetime) -> datetime:
        if self.start is None:
            return croniter(self.text, moment).get_next(datetime)
        if moment < self.start:
            return self.start
        if self.unit == "month":
            months = _months_between(self.start, moment) // self.count * self.count
            slot = _add_months(self.start, months)
            while slot <= moment:
                months += self.count
                slot = _add_months(self.start, months)
            return slot
        period = _UNITS[self.unit] * self.count
        return self.start + period * ((moment - self.start) // period + 1)


def parse_schedule(text: str, now: datetime) -> Schedule:
    """The schedule, or a ValidationError naming ``cronSchedule`` and what is wrong."""
    match = _ABACO.fullmatch(text)
    if match:
        return _usable(text, _abaco_form(text, match, now), now)
    if "+" not in text and len(text.split()) == 5:
        if not croniter.is_valid(text):
            raise ValidationError(FIELD, f"{text!r} is not a valid cron expression")
        return _usable(text, Schedule(text.strip()), now)
    raise ValidationError(FIELD, f"{text!r} is neither Abaco's 'YYYY-MM-DD HH + N "
                                 "hours|days|weeks|months' (or 'now + ...') nor a five-field "
                                 "cron expression")


def _usable(text: str, schedule: Schedule, now: datetime) -> Schedule:
    """A schedule whose next slot can be computed (not a 30th of February, not a period
    beyond the calendar)."""
    try:
        schedule.next_after(now)
    except (OverflowError, ValueError, CroniterError) as exc:
        raise ValidationError(FIELD, f"{text!r} has no next run: {exc}") from None
    return schedule


def _abaco_form(text: str, match: re.Match[str], now: datetime) -> Schedule:
    start_text, count_text, unit = match.group(1), match.group(2), match.group(3).lower()
    count = int(count_text)
    if count < 1:
        raise ValidationError(FIELD, f"{text!r}: the period must be at least 1 {unit}")
    if start_text.lower() == "now":
        start = now.replace(minute=0, second=0, microsecond=0)
    else:
        try:
            start = datetime.strptime(start_text, "%Y-%m-%d %H").replace(tzinfo=UTC)
        except ValueError:
            raise ValidationError(FIELD, f"{text!r}: {start_text!r} is not a date and hour "
                                         "(YYYY-MM-DD HH, UTC)") from None
    return Schedule(text.strip(), start, count, unit)


def _months_between(start: datetime, moment: datetime) -> int:
    return max(0, (moment.year - start.year) * 12 + moment.month - start.month)


def _add_months(start: datetime, months: int) -> datetime:
    """The same day and hour ``months`` later; the month's last day when it is shorter."""
    index = start.month - 1 + months
    year, month = start.year + index // 12, index % 12 + 1
    day = min(start.day, calendar.monthrange(year, month)[1])
    return start.replace(year=year, month=month, day=day)
