"""The reconcile loop.

``tick()`` is one full pass over every actor; between passes the loop blocks on
the wake stream, so a new message or actor is looked at at once. For each
actor a pass: checks the image of a SUBMITTED actor (READY or ERROR), resolves
what dead workers held, and starts the workers the policy asks for.

Only one scheduler is active: it holds ``scheduler:lock`` (SET NX with a TTL,
renewed every pass); another instance waits as standby until the lock lapses.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, cast

from jobs.errors import AbacoError, NotFound
from jobs.ids import new_id
from jobs.keys import INBOX_GROUP
from jobs.lifecycle import retry_delays
from jobs.placers.local import LocalPlacer
from jobs.runners import Runner, make_runner
from jobs.settings import Settings, load_settings
from jobs.store import Store
from jobs.timeutil import now_iso
from scheduler.policy import (
    ActorLoad,
    fair_share,
    idle_to_reclaim,
    recovery_action,
    workers_to_start,
)

LOG = logging.getLogger("abaco.scheduler")
RECOVERY_CONSUMER = "scheduler"
# Take the lock if free, or renew it if ours; atomic, so two schedulers never both hold it.
_LOCK = """
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""


class Scheduler:
    """Reconciles workers with queued work; one active instance at a time."""

    def __init__(self, settings: Settings, store: Store, runner: Runner,
                 placer: LocalPlacer) -> None:
        self.settings = settings
        self.store = store
        self.runner = runner
        self.placer = placer
        self.identity = f"{socket.gethostname()}:{os.getpid()}:{new_id(6)}"
        self.stopping = threading.Event()
        self.image_checks: dict[tuple[str, str], Future[tuple[bool, str]]] = {}
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="image-check")
        self.wake_cursor = "$"
        self.share = settings.max_workers_per_host
        self._lock = store.r.register_script(_LOCK)

    # -- the pass -----------------------------------------------------------------
    def tick(self) -> None:
        """One reconcile pass over every actor."""
        self.placer.reap()
        refs = self.store.all_actor_refs()
        backlog = sum(1 for ref in refs if self.store.queued_count(*ref))
        self.share = fair_share(self.settings.max_workers_per_host, backlog)
        for tenant, actor_id in refs:
            self.reconcile_safely(tenant, actor_id)
        if self.placer.capacity() == 0:
            self._reclaim_idle(refs)

    def _reclaim_idle(self, refs: list[tuple[str, str]]) -> None:
        """At the host cap, stop idle workers of quiet actors so starving ones get a worker."""
        starving = 0
        idle: dict[str, list[str]] = {}
        owners: dict[str, tuple[str, str]] = {}
        for tenant, actor_id in refs:
            try:
                actor = self.store.get_actor(tenant, actor_id)
            except AbacoError:
                continue
            workers = [w for w in self.store.workers(tenant, actor_id)
                       if w.get("status") in ("READY", "BUSY", "REQUESTED")]
            queued = self.store.queued_count(tenant, actor_id)
            if queued and not workers and actor["status"] == "READY":
                starving += 1
            elif not queued:
                spare = [w["id"] for w in workers if w.get("status") == "READY"]
                spare = spare[int(actor.get("min_workers") or 0):]
                idle[f"{tenant}/{actor_id}"] = spare
                owners.update({wid: (tenant, actor_id) for wid in spare})
        if starving:
            self.store.r.set(self.store.keys.starving(), starving,
                             px=int(self.settings.scheduler_tick_s * 2000))
        else:
            self.store.r.delete(self.store.keys.starving())
        for worker_id in idle_to_reclaim(starving, idle):
            tenant, actor_id = owners[worker_id]
            self.store.update_worker(tenant, actor_id, worker_id, {"status": "SHUTTING_DOWN"})
            self.store.send_control(tenant, actor_id, worker_id, "stop",
                                    self.settings.heartbeat_ttl_s)

    def reconcile_safely(self, tenant: str, actor_id: str) -> None:
        """One actor's trouble must not stop the pass for the others."""
        try:
            if self.acquire_lock():
                self.reconcile(tenant, actor_id)
        except Exception:
            LOG.exception("reconciling %s/%s failed", tenant, actor_id)

    def reconcile(self, tenant: str, actor_id: str) -> None:
        try:
            actor = self.store.get_actor(tenant, actor_id)
        except NotFound:
            return
        except AbacoError as exc:
            LOG.warning("cannot read actor %s/%s: %s", tenant, actor_id, exc)
            return
        if actor["status"] == "SUBMITTED":
            self._check_image(actor)
            actor = self.store.get_actor(tenant, actor_id)
        alive = self._recover_dead_workers(tenant, actor_id)
        queued = self.store.queued_count(tenant, actor_id)
        if actor["status"] == "ERROR" and queued:
            self._fail_queued(actor)
            return
        load = actor_load(actor, alive, queued, self.settings.default_max_workers, self.share)
        count = workers_to_start(load, self.placer.capacity())
        for _ in range(count):
            worker_id = self.placer.start_worker(tenant, actor_id, int(actor["revision"]))
            LOG.info("started worker %s for %s/%s (%d queued)", worker_id, tenant, actor_id,
                     queued)
        if load.requested:
            self.store.update_actor(tenant, actor_id, {"workers_requested": 0})

    # -- images -------------------------------------------------------------------
    def _check_image(self, actor: dict[str, Any]) -> None:
        """READY once the image is present (or pulled); ERROR naming it when it cannot be had.

        The check runs in a pool so a slow pull does not hold up other actors.
        """
        ref = (actor["tenant"], actor["id"])
        future = self.image_checks.get(ref)
        if future is None:
            future = self.pool.submit(self._image_with_retries, actor["image"])
            self.image_checks[ref] = future
            future.add_done_callback(lambda _f: self.store.wake_scheduler(*ref, "image checked"))
        if not future.done():
            return
        del self.image_checks[ref]
        ok, reason = future.result()
        if self.store.get_actor(*ref)["image"] != actor["image"]:
            return
        status = {"status": "READY", "status_message": ""} if ok else {
            "status": "ERROR", "status_message": reason}
        self.store.update_actor(actor["tenant"], actor["id"], status)

    def _image_with_retries(self, image: str) -> tuple[bool, str]:
        """Present or pulled, trying ``start_attempts`` times with backoff (pool thread)."""
        delays = retry_delays(self.settings.start_attempts)
        while True:
            ok, reason = self.runner.image_available(image)
            if ok or not delays or self.stopping.is_set():
                return ok, reason
            self.stopping.wait(delays.pop(0))

    def _fail_queued(self, actor: dict[str, Any]) -> None:
        reason = f"actor is in ERROR: {actor.get('status_message')}"
        for eid in self.store.queued_ids(actor["tenant"], actor["id"]):
            self.store.drop_queued(actor["tenant"], actor["id"], eid, reason)

    # -- lost workers -------------------------------------------------------------
    def _recover_dead_workers(self, tenant: str, actor_id: str) -> list[dict[str, Any]]:
        """Resolve what dead workers held; return the live workers.

        Dead means: no heartbeat. Besides registered workers, every inbox consumer that
        still holds entries and is not a live worker is resolved, so entries held by a
        worker that deregistered after a failure, or by an interrupted earlier recovery
        (the ``scheduler`` consumer), are never stranded.
        """
        workers = self.store.workers(tenant, actor_id)
        alive = self.store.alive_worker_ids(tenant, actor_id, [w["id"] for w in workers])
        for worker in workers:
            if worker["id"] not in alive:
                self.store.remove_worker(tenant, actor_id, worker["id"])
        inbox = self.store.keys.inbox(tenant, actor_id)
        for consumer in cast(list, self.store.r.xinfo_consumers(inbox, INBOX_GROUP)):
            name = consumer["name"].decode() if isinstance(consumer["name"], bytes) \
                else consumer["name"]
            if name not in alive and (consumer["pending"] or name != RECOVERY_CONSUMER):
                self._recover_consumer(tenant, actor_id, name)
        return [w for w in workers if w["id"] in alive]

    def _recover_consumer(self, tenant: str, actor_id: str, consumer: str) -> None:
        inbox = self.store.keys.inbox(tenant, actor_id)
        r = self.store.r
        pending = cast(list, r.xpending_range(inbox, INBOX_GROUP, min="-", max="+", count=1000,
                                              consumername=consumer))
        entry_ids = [p["message_id"] for p in pending]
        claimed = cast(list, r.xclaim(inbox, INBOX_GROUP, RECOVERY_CONSUMER, 0, entry_ids)
                       ) if entry_ids else []
        for _entry_id, fields in claimed:
            if fields:
                self._resolve_entry(tenant, actor_id, fields[b"eid"].decode())
        if entry_ids:
            with r.pipeline() as pipe:
                pipe.xack(inbox, INBOX_GROUP, *entry_ids)
                pipe.xdel(inbox, *entry_ids)
                pipe.execute()
        if consumer != RECOVERY_CONSUMER:
            r.xgroup_delconsumer(inbox, INBOX_GROUP, consumer)
        if entry_ids:
            LOG.warning("worker %s of %s/%s lost; %d message(s) resolved", consumer, tenant,
                        actor_id, len(entry_ids))

    def _resolve_entry(self, tenant: str, actor_id: str, eid: str) -> None:
        try:
            record: dict[str, Any] | None = self.store.get_execution(tenant, actor_id, eid)
        except NotFound:
            record = None
        action = recovery_action(record)
        if action == "requeue":
            self.store.requeue(tenant, actor_id, eid)
        elif action == "fail":
            self.runner.kill_execution(eid)
            self.store.finish_execution(tenant, actor_id, eid, {
                "status": "ERROR", "status_message": "worker lost", "finish_time": now_iso()})

    # -- the loop -----------------------------------------------------------------
    def acquire_lock(self) -> bool:
        """Take or renew the active-scheduler lock."""
        ttl_ms = int(self.settings.scheduler_tick_s * 3 * 1000)
        keys = [self.store.keys.scheduler_lock()]
        return bool(self._lock(keys=keys, args=[self.identity, ttl_ms]))

    def wait_for_wake(self, timeout_s: float) -> set[tuple[str, str]]:
        """Block on the wake stream; return the actors named there."""
        reply = self.store.r.xread({self.store.keys.scheduler_wake(): self.wake_cursor},
                                   block=max(1, int(timeout_s * 1000)), count=1000)
        actors: set[tuple[str, str]] = set()
        for _stream, entries in cast(list, reply or []):
            for entry_id, fields in entries:
                self.wake_cursor = entry_id.decode()
                tenant, _, actor_id = fields[b"actor"].decode().partition("/")
                actors.add((tenant, actor_id))
        return actors

    def run(self) -> None:
        """Serve until SIGTERM: standby while another holds the lock, else reconcile."""
        tick_s = self.settings.scheduler_tick_s
        next_full = 0.0
        while not self.stopping.is_set():
            try:
                if not self.acquire_lock():
                    self.stopping.wait(tick_s / 2)
                    continue
                if time.monotonic() >= next_full:
                    self.tick()
                    next_full = time.monotonic() + tick_s
                for tenant, actor_id in self.wait_for_wake(min(tick_s, 1.0)):
                    self.reconcile_safely(tenant, actor_id)
                self.placer.reap()
            except Exception:
                LOG.exception("scheduler pass failed; retrying")
                self.stopping.wait(1.0)
        self._release_lock()

    def _release_lock(self) -> None:
        key = self.store.keys.scheduler_lock()
        holder = self.store.r.get(key)
        if holder is not None and cast(bytes, holder).decode() == self.identity:
            self.store.r.delete(key)


def actor_load(actor: dict[str, Any], alive: list[dict[str, Any]], queued: int,
               default_max_workers: int, share: int) -> ActorLoad:
    """What the policy needs to know of an actor, from its record and live workers."""
    revision = int(actor["revision"])
    return ActorLoad(
        status=actor["status"], stateless=bool(actor.get("stateless", True)), queued=queued,
        busy=sum(1 for w in alive if w.get("status") == "BUSY"),
        alive_current=sum(1 for w in alive if w.get("revision", revision) == revision),
        alive_total=len(alive), min_workers=int(actor.get("min_workers") or 0),
        max_workers=min(share, int(actor.get("max_workers") or default_max_workers)),
        requested=int(actor.get("workers_requested") or 0))


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s scheduler %(message)s")
    settings = load_settings()
    store = Store.from_settings(settings)
    scheduler = Scheduler(settings, store, make_runner(settings), LocalPlacer(settings, store))
    signal.signal(signal.SIGTERM, lambda *_: scheduler.stopping.set())
    signal.signal(signal.SIGINT, lambda *_: scheduler.stopping.set())
    LOG.info("scheduler %s starting", scheduler.identity)
    scheduler.run()
    LOG.info("scheduler %s stopping; draining its workers", scheduler.identity)
    scheduler.placer.drain(settings.drain_timeout_s + 5)


if __name__ == "__main__":
    main()
