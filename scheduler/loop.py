"""The reconcile loop.

``tick()`` is a pass: over every actor the first time, then over those with workers
or anything waiting and a slice of the rest (see ``_refs_for_this_pass``); between
passes the loop blocks on the wake stream, so a new message or actor is looked at
at once. For each actor a pass: checks the image of a SUBMITTED actor (``scheduler.images``),
resolves what dead workers held (``scheduler.recovery``), and registers then
places the workers the policy asks for.

Only one scheduler is active: it holds the lock (``Inbox.acquire``), and each new
holder gets the next epoch, its fencing token: every write it makes carries the
epoch, so a scheduler paused past its lock's TTL can no longer change anything
once the standby has taken over.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import redis

from jobs.errors import AbacoError, BackendMisconfigured, BackendUnavailable, NotFound
from jobs.ids import new_id
from jobs.inbox import Outcome
from jobs.logstore import LogStore
from jobs.models import FINAL_EXECUTION_STATUSES
from jobs.placers import make_placer
from jobs.placers.base import Placer
from jobs.runners import Runner, make_runner
from jobs.secrets import SecretStore
from jobs.service import Platform
from jobs.settings import Settings, load_settings
from jobs.status import LIVE_WORKER, ActorStatus, WorkerStatus
from jobs.store import Store
from jobs.timeutil import now_iso, seconds_between, to_iso
from scheduler.cron_firing import fire_if_due
from scheduler.deliver import EventDelivery
from scheduler.images import ImageChecks
from scheduler.policy import ActorLoad, fair_share, idle_to_reclaim, workers_to_start
from scheduler.recovery import recover_actor

LOG = logging.getLogger("abaco.scheduler")
# How long a worker has to copy its run's logs to S3 itself before the scheduler does.
LOG_COPY_GRACE_S = 30.0


class Scheduler:
    """Reconciles workers with queued work; one active instance at a time."""

    def __init__(self, settings: Settings, store: Store, runner: Runner, placer: Placer,
                 logs: LogStore | None = None) -> None:
        self.settings = settings
        self.store = store
        self.placer = placer
        self.runner = runner
        self.logs = logs
        self.identity = f"{socket.gethostname()}:{os.getpid()}:{new_id(6)}"
        self.stopping = threading.Event()
        self.images = ImageChecks(store, runner, settings.start_attempts, self.stopping,
                                  settings.event_queue_max)
        self.wake_cursor = "$"
        self.share = settings.max_workers_per_host
        self.backlog = 0  # actors with queued messages at the last full pass
        self.swept_once = False
        self.next_prune = 0.0  # monotonic time of the next sweep for prewarmed leftovers
        self.sweep_cursor = 0
        self.attention: set[tuple[str, str]] = set()
        self.published: set[tuple[str, str]] = set()  # the last watched set written
        self.warm_share = settings.max_workers_per_host  # minWorkers kept warm, at most
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)  # tests move it
        self.epoch = 0
        self.ended: dict[tuple[str, str], set[str]] = {}
        self.held: dict[tuple[str, str], tuple[str, int]] = {}  # actor -> (owner, workers)

    # -- the pass -----------------------------------------------------------------
    def tick(self) -> None:
        """One reconcile pass: over every actor the first time, then over those that need
        it (see ``_refs_for_this_pass``), so its cost follows the work, not the number of
        registered actors."""
        if self.wake_cursor == "$":  # fixed before the first pass: no wake-up after it lost
            self.wake_cursor = self.store.wake_position()
        self._collect_ended()
        refs, kept = self._refs_for_this_pass()
        self.held = {ref: count for ref, count in self.held.items()
                     if ref in refs or count[1]}
        backlog = sum(1 for ref in refs if self.store.queued_count(*ref))
        self.backlog = backlog
        self.share = fair_share(self.settings.max_workers_per_host, backlog)
        holders = sum(1 for _owner, alive in self.held.values() if alive)
        self.warm_share = fair_share(self.settings.max_workers_per_host, holders + backlog)
        for tenant, actor_id in refs:
            self.reconcile_safely(tenant, actor_id)
        self._publish_watched(always=True)
        if self.placer.capacity() == 0:
            self._reclaim_idle(refs)
        self._copy_pending_logs()
        self._remove_runs_of_deleted_actors()
        self._prune_prepared_runs()
        self._expire_and_delete_logs()
        self._trim_records(kept)

    def _refs_for_this_pass(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """The actors to reconcile, and those whose records retention looks at.

        Everything on the first pass. After it: the actors that hold workers on this
        host, those that asked for attention at their last reconcile (messages waiting,
        an image check under way, a schedule, a warm start, an admin's request, a
        minimum), and a slice of all actors sized so that a whole sweep takes
        ``scheduler_sweep_s``: the safety net, checked in one round trip per slice so
        settled idle actors cost almost nothing. Messages, registrations and workers
        leaving wake the scheduler for their actor at once anyway."""
        if not self.swept_once:
            self.swept_once = True
            every = self.store.all_actor_refs()
            return every, every
        refs = set(self.attention)
        refs.update((tenant, actor_id) for tenant, actor_id, _w in
                    self.store.host_workers(self.placer.host))
        passes = max(1.0, self.settings.scheduler_sweep_s / self.settings.scheduler_tick_s)
        self.sweep_cursor, batch = self.store.actor_refs_slice(
            self.sweep_cursor, max(100, int(self.store.actor_count() / passes) + 1))
        batch = [ref for ref in batch if ref not in refs]
        flags = self.store.sweep_flags(batch) if batch else []
        kept = [*refs, *(ref for ref, (_due, records) in zip(batch, flags, strict=True)
                         if records)]
        refs.update(ref for ref, (due, _records) in zip(batch, flags, strict=True) if due)
        return sorted(refs), kept

    def _publish_watched(self, always: bool = False) -> None:
        """The actors with messages waiting or workers, for the metrics' queue and
        worker gauges (read when ``/metrics`` is scraped); written when it changed."""
        if always or self.attention != self.published:
            self.store.set_watched(self.attention)
            self.published = set(self.attention)

    def _note_attention(self, ref: tuple[str, str], actor: dict[str, Any], waiting: int,
                        workers: int) -> None:
        """Remember an actor the next pass must look at even if nothing wakes it: one with
        workers (wherever they were placed: a scheduler taking over from one on another
        host must still notice them die), or with anything waiting."""
        needs = waiting or workers or actor["status"] == ActorStatus.SUBMITTED \
            or actor.get("cron_on") \
            or actor.get("warm_start") or actor.get("workers_requested") \
            or int(actor.get("min_workers") or 0)
        if needs:
            self.attention.add(ref)
        else:
            self.attention.discard(ref)

    def reconcile_safely(self, tenant: str, actor_id: str) -> None:
        """One actor's trouble must not stop the pass for the others."""
        try:
            if self.acquire_lock():
                self.reconcile(tenant, actor_id)
        except BackendUnavailable as exc:
            self.store.inbox.backend_errors.seen(exc.message)
            LOG.warning("reconciling %s/%s failed: %s", tenant, actor_id, exc.message)
        except Exception:
            LOG.exception("reconciling %s/%s failed", tenant, actor_id)

    def reconcile(self, tenant: str, actor_id: str) -> None:
        try:
            actor = self.store.get_actor(tenant, actor_id)
        except NotFound:  # deleted: nothing of it may count any more (quotas, shares)
            self.attention.discard((tenant, actor_id))
            self.held.pop((tenant, actor_id), None)
            self.ended.pop((tenant, actor_id), None)
            return
        if actor["status"] == ActorStatus.SUBMITTED:
            self.images.consider(self.epoch, actor)
        fire_if_due(self.store, actor, self.clock())
        alive = recover_actor(self.store, self.epoch, tenant, actor_id,
                              self.ended.pop((tenant, actor_id), set()),
                              self.settings.max_recoveries, self._removed)
        queued = self.store.queued_count(tenant, actor_id)
        if actor["status"] == ActorStatus.ERROR and queued:
            self._fail_queued(actor)
            return
        waiting = queued + self.store.orphan_count(tenant, actor_id)
        self._note_attention((tenant, actor_id), actor, waiting, len(alive))
        self.held[(tenant, actor_id)] = (actor["owner"], len(alive))
        # While another actor's message waits for a slot, no worker starts just to be warm.
        warm_share = 0 if not waiting and self.store.starving() else self.warm_share
        load = actor_load(actor, alive, waiting, self.settings.default_max_workers, self.share,
                          warm_share)
        if actor.get("warm_start") and actor["status"] != ActorStatus.SUBMITTED:
            load = self._warm_start(actor, load)
        wanted = min(workers_to_start(load, self.settings.max_workers_per_host),
                     self._quota_left(tenant, actor["owner"]))
        for _ in range(min(wanted, self.placer.capacity()) if wanted else 0):
            if self.start_worker(actor) is None:
                break
            owner, held = self.held[(tenant, actor_id)]
            self.held[(tenant, actor_id)] = (owner, held + 1)
        if wanted and queued and not alive and self.placer.capacity() == 0:
            # A message waits at the host cap: free an idle worker of a quiet actor now
            # (warm ones included), not at the next full pass.
            holders = [ref for ref, (_owner, count) in self.held.items() if count]
            self._reclaim_idle([*holders, (tenant, actor_id)])
        if load.requested:
            self.store.update_actor(tenant, actor_id, {"workers_requested": 0})

    def _warm_start(self, actor: dict[str, Any], load: ActorLoad) -> ActorLoad:
        """Registered or updated, now checked: one worker, as Abaco starts one, so the first
        message is warm, but only from a spare slot: never while any actor's messages
        wait, and once only (the flag is cleared either way), so registering thousands
        of actors fills the spare slots and no more."""
        self.store.update_actor(actor["tenant"], actor["id"], {"warm_start": 0})
        spare = not self.backlog and not self.store.starving() and self.placer.capacity() > 0
        if actor["status"] != ActorStatus.READY or not spare:
            return load
        # the policy then starts one unless a worker of this revision (stateless) or any
        # worker (stateful: never two) is already there
        return dataclasses.replace(load, requested=max(load.requested, 1))

    def _quota_left(self, tenant: str, owner: str) -> int:
        """Workers the owner and the tenant may still hold (``user_max_workers``,
        ``tenant_max_workers``; 0 is no limit). A worker runs one execution at a time, so
        this also bounds their concurrent executions. Counted from this scheduler's last
        look at each actor."""
        left = self.settings.max_workers_per_host
        for limit, mine in ((self.settings.user_max_workers, lambda k, o: k[0] == tenant
                             and o == owner),
                            (self.settings.tenant_max_workers, lambda k, o: k[0] == tenant)):
            if limit:
                held = sum(n for key, (o, n) in self.held.items() if mine(key, o))
                left = min(left, max(0, limit - held))
        return left

    def start_worker(self, actor: dict[str, Any]) -> str | None:
        """Register a worker (fenced by our epoch, one at most for a stateful actor), then
        place it."""
        tenant, actor_id, revision = actor["tenant"], actor["id"], int(actor["revision"])
        worker_id = new_id()
        record = {"id": worker_id, "status": str(WorkerStatus.REQUESTED),
                  "create_time": now_iso(), "location": self.placer.location,
                  "host_id": self.placer.host, "pid": None, "revision": revision}
        limit = -1 if actor.get("stateless", True) else 1
        outcome = self.store.inbox.register(self.epoch, tenant, actor_id, record,
                                            self.settings.worker_startup_grace_s, limit,
                                            revision)
        if outcome is not Outcome.OK:
            LOG.info("no worker for %s/%s: %s", tenant, actor_id, outcome)
            return None
        self.store.add_host_worker(self.placer.host, tenant, actor_id, worker_id)
        try:
            self.placer.place(tenant, actor_id, worker_id)
        except Exception:
            self.store.inbox.remove(self.epoch, tenant, actor_id, worker_id, force=True)
            self.store.drop_host_worker(self.placer.host, tenant, actor_id, worker_id)
            raise
        LOG.info("started worker %s for %s/%s revision %d", worker_id, tenant, actor_id,
                 revision)
        return worker_id

    def _fail_queued(self, actor: dict[str, Any]) -> None:
        """The image of this revision cannot be had: what waits for it cannot run."""
        reason = f"actor is in ERROR: {actor.get('status_message')}"
        for eid in self.store.queued_ids(actor["tenant"], actor["id"]):
            self.store.drop_queued(actor["tenant"], actor["id"], eid, reason)

    def _removed(self, worker: dict[str, Any]) -> None:
        """A dead worker's registration is gone: its placer makes sure its process (a
        frozen or partitioned one) cannot linger in a slot."""
        lost = getattr(self.placer, "lost", None)
        if lost is not None and worker.get("location") == self.placer.location:
            try:
                lost(worker)
            except AbacoError as exc:
                LOG.warning("worker %s not cleaned up: %s", worker.get("id"), exc.message)

    def _collect_ended(self) -> None:
        for tenant, actor_id, worker_id in self.placer.ended():
            self.ended.setdefault((tenant, actor_id), set()).add(worker_id)

    def _reclaim_idle(self, refs: list[tuple[str, str]]) -> None:
        """At the host cap, stop idle workers of quiet actors so starving ones get a worker."""
        starving = 0
        idle: dict[str, list[str]] = {}    # idle beyond the actor's kept-warm minimum
        warm: dict[str, list[str]] = {}    # idle within it: taken only when still short
        owners: dict[str, tuple[str, str]] = {}
        freeing = 0                        # slots already on their way back
        for tenant, actor_id in refs:
            try:
                actor = self.store.get_actor(tenant, actor_id)
            except AbacoError:
                continue
            every = self.store.workers(tenant, actor_id)
            workers = [w for w in every if w.get("status") in LIVE_WORKER]
            freeing += sum(1 for w in every if w.get("status") == WorkerStatus.SHUTTING_DOWN)
            queued = self.store.queued_count(tenant, actor_id)
            if queued and not workers and actor["status"] == ActorStatus.READY:
                starving += 1
            elif not queued:
                spare = [w["id"] for w in workers if w.get("status") == WorkerStatus.READY]
                # minWorkers stays warm only within a fair share of the host
                kept = min(int(actor.get("min_workers") or 0), self.warm_share)
                idle[f"{tenant}/{actor_id}"], warm[f"{tenant}/{actor_id}"] = \
                    spare[kept:], spare[:kept]
                owners.update({wid: (tenant, actor_id) for wid in spare})
        self.store.set_starving(starving, self.settings.scheduler_tick_s * 2)
        wanted = max(0, starving - freeing)
        chosen = idle_to_reclaim(wanted, idle)
        chosen += idle_to_reclaim(wanted - len(chosen), warm)  # a message beats warmth
        for worker_id in chosen:
            tenant, actor_id = owners[worker_id]
            self.store.update_worker(tenant, actor_id, worker_id,
                                     {"status": str(WorkerStatus.SHUTTING_DOWN)})
            self.store.send_control(tenant, actor_id, worker_id, "stop",
                                    self.settings.heartbeat_ttl_s)

    def _trim_records(self, refs: list[tuple[str, str]]) -> None:
        """Retention, once per full pass (never on a message's wake-up)."""
        older_than = time.time() - self.settings.execution_keep_s
        for tenant, actor_id in refs:
            try:
                self.store.trim_executions(tenant, actor_id, self.settings.execution_keep_count,
                                           older_than, self.settings.execution_settle_s)
            except AbacoError as exc:
                LOG.warning("records of %s/%s not trimmed yet: %s", tenant, actor_id,
                            exc.message)
                return

    def _expire_and_delete_logs(self) -> None:
        """Logs past their logEx go (S3 and Redis; the record says when); S3 objects of
        deleted actors and trimmed records go too. Bounded per pass."""
        if self.logs is None:
            return
        try:
            for tenant, actor_id, eid, due in self.store.logs_due_to_expire(time.time()):
                self.logs.delete(tenant, actor_id, eid, logs_only=True)
                self.store.logs_expired(tenant, actor_id, eid,
                                        to_iso(datetime.fromtimestamp(due, UTC)))
            for tenant, actor_id, eid in self.store.logs_deletion_batch():
                self.logs.delete(tenant, actor_id, eid)
                self.store.logs_deleted(tenant, actor_id, eid)
        except AbacoError as exc:
            LOG.warning("logs not expired or deleted yet: %s", exc.message)

    def _remove_runs_of_deleted_actors(self) -> None:
        """Nothing of a run may stay on the engine once its actor is gone."""
        for handle in self.store.runs_to_remove():
            try:
                self.runner.stop(handle, remove=True)
            except AbacoError as exc:
                LOG.warning("run %s of a deleted actor not removed yet: %s", handle, exc)
                return
            self.store.run_removed(handle)

    def _prune_prepared_runs(self) -> None:
        """Once a sweep (``scheduler_sweep_s``): prewarmed containers dead workers left,
        including those of actors no worker will serve again."""
        now = time.monotonic()
        if now < self.next_prune:
            return
        self.next_prune = now + self.settings.scheduler_sweep_s
        removed = self.runner.prune_prepared(self.store.platform_id())
        if removed:
            LOG.info("removed %d prewarmed containers dead workers left", removed)
        self._remove_idle_runs()

    def _remove_idle_runs(self) -> None:
        """Runs of this platform left on the engine by workers that died between making
        and starting them, or between their end and their removal, once their execution
        is over or gone (its actor deleted): no worker will start or read them again.
        One whose execution still waits stays: its next worker starts it by its name."""
        idle = self.runner.idle_runs(self.store.platform_id(), self.settings.docker_timeout_s)
        if not idle:
            return
        statuses = self.store.execution_statuses(
            [(run.tenant, run.actor_id, run.execution_id) for run in idle])
        for run, status in zip(idle, statuses, strict=True):
            if status is None or status in FINAL_EXECUTION_STATUSES:
                try:
                    self.runner.stop(run.handle, remove=True)
                except AbacoError as exc:
                    LOG.info("idle run %s not removed yet: %s", run.handle[:12], exc)

    def _copy_pending_logs(self) -> None:
        """Logs a worker did not copy to S3 (S3 refused them, or the worker died first)
        are kept in Redis until a pass copies them. A worker copies its run's logs just
        after the final record: those are left to it for ``LOG_COPY_GRACE_S``."""
        if self.logs is None:
            return
        for tenant, actor_id, eid in self.store.logs_pending():
            try:
                record = self.store.get_execution(tenant, actor_id, eid)
                if not _due_for_copy(record):
                    continue
                data = self.store.live_log(tenant, actor_id, eid)
                if data is not None:  # None: copied (and dropped) meanwhile
                    public = {k: v for k, v in record.items() if k != "env"}
                    self.logs.put(tenant, actor_id, eid, data, public)
            except NotFound:
                pass
            except AbacoError as exc:
                LOG.warning("logs of %s still not copied: %s", eid, exc.message)
                return
            self.store.logs_copied(tenant, actor_id, eid)

    # -- the loop -----------------------------------------------------------------
    def acquire_lock(self) -> bool:
        """Take or renew the active-scheduler lock; remember our epoch."""
        self.epoch = self.store.inbox.acquire(self.identity, self.settings.scheduler_tick_s * 3)
        return self.epoch > 0

    def wait_for_wake(self, timeout_s: float) -> set[tuple[str, str]]:
        """Block on the wake stream; return the actors named there."""
        self.wake_cursor, actors = self.store.wait_wake(self.wake_cursor, timeout_s)
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
                self._publish_watched()
                self._collect_ended()
            except Exception:
                LOG.exception("scheduler pass failed; retrying")
                self.stopping.wait(self.settings.backoff_first_s)
        self.close()

    def close(self) -> None:
        self.images.close()
        try:
            self.store.inbox.release_lock(self.identity)
        except AbacoError as exc:
            LOG.warning("lock not released (it will lapse): %s", exc)


def actor_load(actor: dict[str, Any], alive: list[dict[str, Any]], queued: int,
               default_max_workers: int, share: int, warm_share: int) -> ActorLoad:
    """What the policy needs to know of an actor, from its record and live workers.
    ``minWorkers`` counts only up to ``warm_share``: a fair slice of the host among the
    actors holding workers or waiting for one, so idle warm workers never starve
    another actor's message."""
    revision = int(actor["revision"])
    return ActorLoad(
        status=actor["status"], stateless=bool(actor.get("stateless", True)), queued=queued,
        busy=sum(1 for w in alive if w.get("status") == WorkerStatus.BUSY),
        alive_current=sum(1 for w in alive if w.get("revision", revision) == revision),
        alive_total=len(alive),
        min_workers=min(warm_share, int(actor.get("min_workers") or 0)),
        max_workers=min(share, int(actor.get("max_workers") or default_max_workers)),
        requested=int(actor.get("workers_requested") or 0))


def check_credentials(store: Store, secrets: SecretStore) -> None:
    """Refuse to start (and so to take the lock) with credentials Redis or Vault refuse:
    a misconfigured standby must not become the active scheduler. A service that is
    merely down is waited for, as at any other time."""
    try:
        store.r.ping()
    except redis.AuthenticationError as exc:
        raise SystemExit(f"scheduler: redis refused our credentials ({exc}); set "
                         "ABACO_REDIS_PASSWORD (abaco up keeps it in "
                         "{data_dir}/secrets/redis.password)") from None
    except redis.RedisError as exc:
        LOG.warning("redis not reachable yet (%s); waiting for it", exc)
    try:
        secrets.get("_", "_credentials_check")
    except BackendMisconfigured as exc:
        raise SystemExit(f"scheduler: {exc.message} (abaco up keeps the token in "
                         "{data_dir}/secrets/vault.json)") from None
    except AbacoError as exc:
        LOG.warning("vault not reachable yet (%s)", exc.message)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s scheduler %(message)s")
    settings = load_settings()
    store = Store.from_settings(settings)
    store.inbox.backend_errors.process = "scheduler"
    check_credentials(store, SecretStore(settings))
    runner = make_runner(settings)
    logs = LogStore(settings)
    try:
        logs.ensure_bucket()
    except AbacoError as exc:
        LOG.warning("bucket not checked yet (%s); logs wait in redis meanwhile", exc.message)
    scheduler = Scheduler(settings, store, runner,
                          make_placer(settings, store, runner, logs, SecretStore(settings)),
                          logs)
    signal.signal(signal.SIGTERM, lambda *_: scheduler.stopping.set())
    signal.signal(signal.SIGINT, lambda *_: scheduler.stopping.set())
    LOG.info("scheduler %s starting", scheduler.identity)
    EventDelivery(Platform(settings, store, logs, SecretStore(settings))).start(
        scheduler.stopping)
    scheduler.run()
    LOG.info("scheduler %s stopping; draining its workers", scheduler.identity)
    scheduler.placer.drain(settings.drain_timeout_s + 5)


if __name__ == "__main__":
    main()


def _due_for_copy(record: dict[str, Any]) -> bool:
    """Final, and long enough ago that its worker would have copied the logs itself."""
    if record.get("status") not in FINAL_EXECUTION_STATUSES:
        return False  # its (adopting) worker copies them when it ends
    finished = record.get("finish_time")
    return not finished or seconds_between(finished, now_iso()) > LOG_COPY_GRACE_S
