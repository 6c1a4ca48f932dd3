"""The platform's own metrics, kept in Redis so every process adds to one set.

Workers, the scheduler and the API end executions; each adds to the counters here
right after the step that ended one succeeded (``jobs.inbox``, the one place where
statuses move), so the numbers are those of the records. The API turns them into
Prometheus metric families when ``/metrics`` is scraped (``api.metrics``).

All of it is one hash, ``{prefix}:metrics``. A field is a metric name and its label
values joined by tabs (no id can hold a tab). Histograms are kept as per-bucket counts
plus ``sum`` and ``count`` fields and made cumulative when read.
"""

from __future__ import annotations

import bisect
import logging
import threading
from collections import Counter
from collections.abc import Mapping
from typing import Any

LOG = logging.getLogger("abaco.metrics")
SEP = "\t"
# Upper bounds (seconds) of the queue-time and run-time buckets, from a prewarmed run
# (tens of milliseconds) to an hour-long job.
BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
           900.0, 3600.0)


def field(*parts: str) -> str:
    return SEP.join(parts)


def bucket_of(seconds: float) -> str:
    """The field suffix of the smallest bucket holding ``seconds`` (``inf`` past all)."""
    index = bisect.bisect_left(BUCKETS, seconds)
    return repr(BUCKETS[index]) if index < len(BUCKETS) else "inf"


def execution_ended(pipe: Any, key: str, tenant: str, actor_id: str, status: str,
                    fields: Mapping[str, Any]) -> None:
    """Count an execution that reached a final status, and observe its run time."""
    pipe.hincrby(key, field("executions", tenant, actor_id, status), 1)
    _observe(pipe, key, "run_time", fields.get("runtime"))


def execution_started(pipe: Any, key: str, cold: bool, queue_time: Any) -> None:
    """A run began: cold when its worker started for it (the worker's first run); its
    time in the queue is observed here, so every start has one."""
    pipe.hincrby(key, field("starts", "cold" if cold else "warm"), 1)
    _observe(pipe, key, "queue_time", queue_time)


def _observe(pipe: Any, key: str, name: str, value: Any) -> None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        pipe.hincrby(key, field(name, bucket_of(float(value))), 1)
        pipe.hincrbyfloat(key, field(name, "sum"), float(value))
        pipe.hincrby(key, field(name, "count"), 1)


class BackendErrors:
    """Failures of a backing service seen by this process, counted in Redis at once;
    those of Redis itself wait here for the next write that reaches it. ``process``
    labels them: api, scheduler or worker."""

    def __init__(self, client: Any, key: str, process: str = "api") -> None:
        self.client, self.key, self.process = client, key, process
        self.lock = threading.Lock()
        self.pending: Counter[str] = Counter()

    def seen(self, message: str) -> None:
        backend = backend_of(message)
        with self.lock:
            self.pending[backend] += 1
        if backend != "redis":
            self.flush()

    def flush(self) -> None:
        try:
            with self.client.pipeline(transaction=False) as pipe:
                self.flush_into(pipe)
                pipe.execute()
        except Exception as exc:  # noqa: BLE001 - counting must never fail the caller
            LOG.info("backend errors not counted yet: %s", exc)

    def flush_into(self, pipe: Any) -> None:
        """Add what is pending to ``pipe``; lost if that pipeline then fails (a count
        of errors during an outage of Redis is best effort)."""
        with self.lock:
            pending, self.pending = self.pending, Counter()
        for backend, count in pending.items():
            pipe.hincrby(self.key, field("backend_errors", backend, self.process), count)


_BACKENDS = {"redis": "redis", "inbox": "redis", "s3": "s3", "vault": "vault",
             "docker": "docker", "nomad": "nomad"}


def backend_of(message: str) -> str:
    """Which service a BackendUnavailable's message is about (each starts with it)."""
    first = message.split(" ", 1)[0].lower()
    return _BACKENDS.get(first, "other")
