"""What dead workers held: their registrations go, their inbox entries are resolved.

Dead means: no heartbeat (the start-up grace covers a worker still starting), or
its process was seen to end. Each entry is resolved by one fenced step
(``Inbox.recover``), which acts only if the execution is still held by the dead
worker: already final -> acknowledged; never claimed -> delivered again; claimed
-> orphaned, so the next worker adopts the run through its handle (or starts it,
if it never started: starts are idempotent per execution).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from jobs.inbox import Outcome
from jobs.store import Store

LOG = logging.getLogger("abaco.scheduler")


def recover_actor(store: Store, epoch: int, tenant: str, actor_id: str,
                  ended: Iterable[str] = (), most_recoveries: int = 3,
                  on_removed: Callable[[dict[str, Any]], None] | None = None,
                  ) -> list[dict[str, Any]]:
    """Resolve what the actor's dead workers held; return its live workers. Each dead
    registration removed goes to ``on_removed`` (its placer makes sure nothing of it
    lingers)."""
    ended = set(ended)
    workers = store.workers(tenant, actor_id)
    beating = store.alive_worker_ids(tenant, actor_id, [w["id"] for w in workers])
    live = []
    for worker in workers:
        wid = worker["id"]
        if wid in beating and wid not in ended:
            live.append(worker)
            continue
        outcome = store.inbox.remove(epoch, tenant, actor_id, wid, force=wid in ended)
        if outcome is Outcome.ALIVE:
            live.append(worker)
        elif outcome is Outcome.OK:
            if worker.get("host_id"):
                store.drop_host_worker(worker["host_id"], tenant, actor_id, wid)
            if on_removed is not None:
                on_removed(worker)
    live_ids = {w["id"] for w in live}
    _resolve_entries(store, epoch, tenant, actor_id, live_ids, most_recoveries)
    _resolve_held(store, epoch, tenant, actor_id, live_ids, most_recoveries)
    return live


def _resolve_held(store: Store, epoch: int, tenant: str, actor_id: str, live: set[str],
                  most_recoveries: int) -> None:
    """Executions a dead worker held with no inbox entry left (it had adopted them)."""
    for eid, holder in store.inbox.holders(tenant, actor_id).items():
        if holder not in live:
            outcome = store.inbox.recover(epoch, tenant, actor_id, holder, "", eid,
                                          most_recoveries)
            LOG.warning("worker %s of %s/%s gone; it held %s: %s", holder, tenant, actor_id,
                        eid, outcome)


def _resolve_entries(store: Store, epoch: int, tenant: str, actor_id: str,
                     live: set[str], most_recoveries: int) -> None:
    for consumer, pending in store.inbox.consumers(tenant, actor_id).items():
        if consumer in live:
            continue
        entries = store.inbox.held(tenant, actor_id, consumer) if pending else []
        outcomes = [store.inbox.recover(epoch, tenant, actor_id, consumer, entry, eid,
                                        most_recoveries) for entry, eid in entries]
        if Outcome.ALIVE in outcomes or Outcome.FENCED in outcomes:
            continue
        store.inbox.forget_consumer(tenant, actor_id, consumer)
        if entries:
            LOG.warning("worker %s of %s/%s gone; its entries: %s", consumer, tenant, actor_id,
                        ", ".join(f"{eid or '-'} {o}" for (_e, eid), o in zip(entries, outcomes,
                                                                              strict=True)))
