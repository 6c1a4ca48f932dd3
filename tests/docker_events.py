"""How many times the engine began each execution's run, from Docker's own events.

A plain run is a container started with the execution's label; a prewarmed run
is a container started earlier (labelled ``abaco.prewarm``, no execution yet)
and renamed to the execution's container name when its message was delivered.
Both are counted, so "ran twice" is caught whichever way each run began.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from jobs.runners.docker import LABEL_EXECUTION
from jobs.runners.prewarm import LABEL_PREWARM


def runs_begun(api: Any, actor_id: str, since: float) -> Counter[str]:
    """Execution id -> runs begun for it since ``since`` (``api``: docker's APIClient)."""
    events = api.events(since=int(since) - 1, until=int(time.time()) + 1, decode=True,
                        filters={"event": ["start", "rename"],
                                 "label": f"abaco.actor={actor_id}"})
    begun: Counter[str] = Counter()
    for event in events:
        attributes = event["Actor"]["Attributes"]
        if event["Action"] == "start" and LABEL_EXECUTION in attributes:
            begun[attributes[LABEL_EXECUTION]] += 1
        elif event["Action"] == "rename" and LABEL_PREWARM in attributes:
            begun[attributes["name"].rsplit("-", 1)[-1]] += 1
    return begun
