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
    ("2000-01-01 00 + 99999999999 months", "no next run"),
    ("2000-01-01 00 + 999999999999999 hours", "no next run"), ("0 0 30 2 *", "no next run"),
])
def test_invalid_schedules_name_the_problem(text: str, named: str):
    with pytest.raises(ValidationError) as caught:
        parse_schedule(text, NOW)
    assert caught.value.message.startswith("cronSchedule") and named in caught.value.message


# -- firing, through the real scheduler and worker (fakes for the engine and processes) ------
def _executions(harness, actor_id: str) -> list[dict]:  # type: ignore[no-untyped-def]
    return harness.store.list_executions("T", actor_id)[1]


def test_a_due_schedule_fires_once_with_executor_cron_and_moves_past_now(harness):  # type: ignore[no-untyped-def]
    from datetime import timedelta

    from jobs.timeutil import parse_iso
    from scheduler.cron_firing import fire_if_due
    from tests.waits import wait_until

    actor = harness.actor(cron_schedule="2026-01-01 00 + 1 hour")
    assert actor["cron_on"] is True
    due = parse_iso(actor["cron_next_ex"])
    assert due.minute == 0 and due > datetime.now(UTC)
    harness.scheduler.clock = lambda: due - timedelta(seconds=1)
    harness.scheduler.reconcile("T", actor["id"])
    assert _executions(harness, actor["id"]) == []
    harness.scheduler.clock = lambda: due + timedelta(minutes=1)
    stale = harness.store.get_actor("T", actor["id"])
    harness.scheduler.reconcile("T", actor["id"])
    harness.scheduler.reconcile("T", actor["id"])
    assert fire_if_due(harness.store, stale, due + timedelta(minutes=1)) is None, \
        "a second scheduler with the same view does not fire the slot again"
    fired = _executions(harness, actor["id"])
    assert len(fired) == 1 and fired[0]["executor"] == "cron"
    wait_until(lambda: harness.execution(actor["id"], fired[0]["id"])["status"] == "COMPLETE",
               10, "the cron execution")
    assert parse_iso(harness.store.get_actor("T", actor["id"])["cron_next_ex"]) == \
        due + timedelta(hours=1)
    # five hours of downtime: one run, and the next slot after now
    harness.scheduler.clock = lambda: due + timedelta(hours=5, minutes=30)
    harness.scheduler.reconcile("T", actor["id"])
    harness.scheduler.reconcile("T", actor["id"])
    assert len(_executions(harness, actor["id"])) == 2
    assert parse_iso(harness.store.get_actor("T", actor["id"])["cron_next_ex"]) == \
        due + timedelta(hours=6)


def test_cron_off_fires_nothing_and_shows_no_next_time(harness):  # type: ignore[no-untyped-def]
    from datetime import timedelta

    actor = harness.actor(cron_schedule="*/5 * * * *", cron_on=False)
    assert actor["cron_next_ex"] is None
    harness.scheduler.clock = lambda: datetime.now(UTC) + timedelta(hours=1)
    harness.scheduler.reconcile("T", actor["id"])
    assert _executions(harness, actor["id"]) == []
    updated = harness.platform.update_actor(
        __import__("tests.harness", fromlist=["CALLER"]).CALLER, actor["id"],
        {"image": actor["image"], "cronSchedule": "*/5 * * * *", "cronOn": True})
    assert updated["cron_next_ex"] is not None
