"""The Placer interface: where worker processes live.

The scheduler registers a worker (``jobs.inbox.Inbox.register``: REQUESTED, with
its start-up grace, fenced by the scheduler's epoch) and only then asks a placer
to run it, so every placer shares one registration and one fencing rule.

    capacity()               workers this host may still take: the cap minus the
                             workers registered on this host (whoever started them)
    place(tenant, actor, w)  run worker ``w`` (already registered)
    release(w, graceful)     SIGTERM-like (finish the current execution) or kill
    ended()                  workers whose process ended since the last call
    drain(timeout_s)         release every worker gracefully, kill what is left
"""

from __future__ import annotations

from typing import Protocol

from jobs.store import Store


class Placer(Protocol):
    host: str
    location: str

    def capacity(self) -> int: ...

    def place(self, tenant: str, actor_id: str, worker_id: str) -> None: ...

    def release(self, worker_id: str, graceful: bool = True) -> None: ...

    def ended(self) -> list[tuple[str, str, str]]: ...

    def drain(self, timeout_s: float) -> None: ...


def free_slots(store: Store, host: str, cap: int) -> int:
    """The cap minus the workers still registered on ``host``; stale index entries of
    workers that are gone are dropped on the way."""
    members = store.host_workers(host)
    registered = 0
    for (tenant, actor_id, worker_id), beating in zip(members, store.beating(members),
                                                      strict=True):
        if beating or _registered(store, tenant, actor_id, worker_id):
            registered += 1
        else:
            store.drop_host_worker(host, tenant, actor_id, worker_id)
    return max(0, cap - registered)


def _registered(store: Store, tenant: str, actor_id: str, worker_id: str) -> bool:
    return any(w["id"] == worker_id for w in store.workers(tenant, actor_id))
