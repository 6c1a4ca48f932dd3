"""Scheduling decisions as pure functions: no I/O, tested directly."""

from __future__ import annotations

from typing import Any, Literal

RecoveryAction = Literal["ack", "requeue", "fail"]


def workers_to_start(actor_status: str, queued: int, alive: int, *, stateless: bool,
                     min_workers: int = 0, max_workers: int | None = None) -> int:
    """How many workers to start for an actor now.

    A READY actor with queued messages and no live worker gets one; ``minWorkers``
    is kept warm; a stateful actor never has more than one.
    """
    if actor_status != "READY":
        return 0
    ceiling = 1 if not stateless else max(1, max_workers or 1)
    wanted = max(min_workers, 1 if queued > 0 else 0)
    return max(0, min(wanted, ceiling) - alive)


def recovery_action(execution: dict[str, Any] | None) -> RecoveryAction:
    """What to do with a message a dead worker held.

    Final record: only the acknowledgement was missing. Never dispatched: no
    container can have started, so deliver it again. Dispatched: it may have run,
    so it ends ERROR rather than running twice.
    """
    if execution is None or execution.get("status") in ("COMPLETE", "ERROR"):
        return "ack"
    if not execution.get("dispatched") and execution.get("status") == "SUBMITTED":
        return "requeue"
    return "fail"
