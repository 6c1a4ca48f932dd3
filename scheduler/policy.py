"""Scheduling decisions as pure functions: no I/O, tested directly."""

from __future__ import annotations

from dataclasses import dataclass

from jobs.status import ActorStatus


@dataclass(frozen=True)
class ActorLoad:
    """What the scheduler knows of one actor at the start of a pass."""

    status: str
    stateless: bool
    queued: int
    busy: int
    alive_current: int
    alive_total: int
    min_workers: int = 0
    max_workers: int = 4
    requested: int = 0


def desired_workers(load: ActorLoad) -> int:
    """How many workers the actor should have now.

    Stateless: one per queued or running message, at least ``minWorkers`` (or an
    admin's request), at most ``maxWorkers``. Stateful: exactly one while it has
    anything to do, never more.
    """
    wanted = max(load.min_workers, load.requested, load.queued + load.busy)
    if not load.stateless:
        return 1 if wanted > 0 else 0
    return max(0, min(wanted, load.max_workers))


def workers_to_start(load: ActorLoad, host_capacity: int) -> int:
    """Workers to start this pass, within the per-host cap.

    Stateless actors count only workers of the current revision, so an update
    starts new workers before the old ones leave. A stateful actor counts every
    worker, so it never has two, not even during an update.
    """
    if load.status != ActorStatus.READY:
        return 0
    alive = load.alive_current if load.stateless else load.alive_total
    return max(0, min(desired_workers(load) - alive, host_capacity))


def fair_share(host_cap: int, actors_with_backlog: int) -> int:
    """Workers one actor may have while the host is shared by actors with a backlog.

    Many busy actors on a small host would otherwise churn through cold starts:
    each actor gets its slice of the cap (at least one worker).
    """
    return max(1, host_cap // max(1, actors_with_backlog))


def idle_to_reclaim(starving: int, idle_by_actor: dict[str, list[str]]) -> list[str]:
    """At the host cap, which idle workers to stop so starving actors get one each.

    ``idle_by_actor`` lists, per actor with nothing queued, its idle workers above
    ``minWorkers``. Takes one per actor in turn, so no single actor is emptied first.
    """
    chosen: list[str] = []
    queues = [list(ids) for ids in idle_by_actor.values() if ids]
    while len(chosen) < starving and queues:
        for ids in list(queues):
            if len(chosen) == starving:
                break
            chosen.append(ids.pop(0))
            if not ids:
                queues.remove(ids)
    return chosen
