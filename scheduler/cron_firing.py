"""Cron: the scheduler posts an actor's scheduled message once its slot is due.

Exactly once per slot, whatever the number of schedulers: the next slot is moved
forward by a compare-and-set on ``cron_next_ex`` before the message is posted, so
two schedulers (or one replaying a pass) never both fire it. The next slot is the
first after *now*: after downtime a missed schedule runs once, not once per
missed slot. A scheduler that dies between the two steps loses that one run
(at most once, never twice).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from jobs.cron import parse_schedule
from jobs.errors import AbacoError
from jobs.service import Message, new_execution
from jobs.status import ACCEPTS_MESSAGES
from jobs.store import Store
from jobs.timeutil import parse_iso, to_iso

LOG = logging.getLogger("abaco.scheduler")
EXECUTOR = "cron"


def fire_if_due(store: Store, actor: dict[str, Any], now: datetime) -> str | None:
    """Post the scheduled message when its slot has come; the execution id, if fired."""
    due_text = actor.get("cron_next_ex")
    if not actor.get("cron_on") or not due_text or actor["status"] not in ACCEPTS_MESSAGES:
        return None
    if parse_iso(due_text) > now:
        return None
    schedule = parse_schedule(actor["cron_schedule"],
                              parse_iso(actor.get("cron_set_time") or due_text))
    following = to_iso(schedule.next_after(now))
    if not store.advance_cron(actor["tenant"], actor["id"], due_text, following):
        return None  # another scheduler fired this slot
    execution = new_execution(actor, EXECUTOR, Message("", "str", {}))
    try:
        store.post_message(execution)
    except AbacoError as exc:
        LOG.warning("cron message for %s/%s not posted: %s", actor["tenant"], actor["id"],
                    exc.message)
        return None
    LOG.info("cron fired %s for %s/%s; next at %s", execution["id"], actor["tenant"],
             actor["id"], following)
    return str(execution["id"])
