"""Worker lifecycle: statuses and the pure rules a worker follows (no I/O)."""

from __future__ import annotations

from collections.abc import Iterable


def idle_limit_s(hints: Iterable[str], idle_s: float, sync_idle_s: float) -> float:
    """How long a worker may sit idle; the ``sync`` hint keeps one warm for longer."""
    return sync_idle_s if "sync" in set(hints) else idle_s


NO_PREWARM_HINT = "noprewarm"


def prewarms(hints: Iterable[str]) -> bool:
    """Whether a worker makes its next container ahead of the message; the
    ``noprewarm`` hint opts an actor out (its runs start the plain way)."""
    return NO_PREWARM_HINT not in set(hints)


def may_leave_idle(alive: int, min_workers: int) -> bool:
    """An idle worker leaves only while the actor keeps its ``minWorkers``."""
    return alive > min_workers


def retry_delays(attempts: int, first_s: float = 0.5, factor: float = 2.0) -> list[float]:
    """Backoff between ``attempts`` tries: 0.5 s, 1 s, 2 s..."""
    return [first_s * factor ** i for i in range(max(0, attempts - 1))]


class Backoff:
    """Growing pauses for riding out an outage: first, 2x first, ... capped at ``most``."""

    def __init__(self, first_s: float, most_s: float) -> None:
        self.first, self.most = first_s, most_s
        self.current = 0.0

    def next(self) -> float:
        self.current = min(self.most, self.current * 2 if self.current else self.first)
        return self.current

    def reset(self) -> None:
        self.current = 0.0
