"""NomadPlacer: warm workers as allocations of one Nomad service job per busy actor.

Nomad scales a group's count; it cannot start a worker with a given identity. So
the scheduler registers a worker as always (the registration is its fencing
token), this placer offers the worker id on the actor's ``placements`` list and
sets the job's count to the actor's registered Nomad workers through
``POST /v1/job/:id/scale``; each allocation runs ``jobs.worker --claim``, which
takes up an offered registration, serves it until it leaves, then waits for the
next. A registration no allocation takes up within its start-up grace lapses and
is recovered like any lost worker; an allocation that is lost stops beating, the
scheduler removes its registration, and every write its worker still tries is
refused (the fencing of ``jobs.inbox``).

- The job (``abaco-workers-<tenant>-<actor>``) has ``Update.MaxParallel = 0``, so no
  deployment ever blocks a scale; its count follows the registrations at each
  scheduler pass (``ended``), and scale to zero deregisters it.
- Nomad stops the highest-indexed allocations first on a scale-down, whichever
  worker they hold; a stopped worker drains (finishes its execution) before it
  exits, within the task's kill timeout.
- Settings and secrets reach the workers through a Nomad Variable at the task's own
  path, read by a template, never through the job.
- Workers on Nomad outlive the scheduler: ``drain`` leaves them to the next
  scheduler (a standby takes over their counts).
- ``nomad_worker_driver``: ``docker`` runs the platform image
  (``nomad_worker_image``); ``raw_exec`` runs this Python on the node (the platform
  installed there).
"""

from __future__ import annotations

import hashlib
import logging
import re
import sys
from typing import Any

from jobs.errors import BackendUnavailable, NotFound
from jobs.nomad_api import TERMINAL, NomadAPI, NomadError, env_template, nomad_time
from jobs.placers.base import free_slots
from jobs.settings import Settings
from jobs.store import Store
from jobs.timeutil import parse_iso

LOG = logging.getLogger(__name__)
PREFIX = "abaco-workers-"
GROUP, TASK = "workers", "worker"


def worker_job_id(tenant: str, actor_id: str) -> str:
    """Readable, and one per actor: where a name had to be changed to fit Nomad's IDs, a
    digest of the original keeps ``a.b`` and ``a_b`` apart."""
    name = f"{tenant}-{actor_id}"
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", name)
    if safe != name:
        safe += "-" + hashlib.sha256(name.encode()).hexdigest()[:8]
    return PREFIX + safe


def worker_variable(job_id: str) -> str:
    return f"nomad/jobs/{job_id}/{GROUP}/{TASK}"


def worker_job(settings: Settings, tenant: str, actor_id: str, count: int,
               queue: str = "default") -> dict[str, Any]:
    """The service job of one actor's warm workers (no setting values in it)."""
    job_id = worker_job_id(tenant, actor_id)
    argv = ["-m", "jobs.worker", "--tenant", tenant, "--actor", actor_id, "--claim"]
    if settings.nomad_worker_driver == "raw_exec":
        config: dict[str, Any] = {"command": sys.executable, "args": argv}
    else:
        config = {"image": settings.nomad_worker_image, "command": "python", "args": argv,
                  "network_mode": "host"}
    template = env_template(worker_variable(job_id), change_mode="restart")
    task = {"Name": TASK, "Driver": settings.nomad_worker_driver, "Config": config,
            "KillTimeout": int((settings.drain_timeout_s + 5) * 1e9),
            "Resources": {"CPU": 200, "MemoryMB": 256}, "Templates": [template]}
    group = {"Name": GROUP, "Count": count, "Tasks": [task],
             "RestartPolicy": {"Attempts": 5, "Delay": 1_000_000_000,
                               "Interval": 300_000_000_000, "Mode": "fail"}}
    return {"ID": job_id, "Name": job_id, "Type": "service",
            "Namespace": settings.nomad_namespace,
            "Datacenters": [d.strip() for d in settings.nomad_datacenters.split(",")],
            "NodePool": settings.node_pool_for(queue), "Priority": settings.nomad_priority,
            "Update": {"MaxParallel": 0},
            "Meta": {"abaco_tenant": tenant, "abaco_actor": actor_id, "abaco_queue": queue},
            "TaskGroups": [group]}


class NomadPlacer:
    """See the module docstring."""

    location = "nomad"

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.host = f"nomad:{settings.nomad_namespace}"
        self.api = NomadAPI(settings.nomad_addr, settings.nomad_token.reveal(),
                            settings.nomad_namespace)
        self.counts: dict[tuple[str, str], int] | None = None  # actor -> the job's count
        self.placed: dict[tuple[str, str], set[str]] = {}

    def capacity(self) -> int:
        return free_slots(self.store, self.host, self.settings.nomad_max_workers)

    def place(self, tenant: str, actor_id: str, worker_id: str) -> None:
        self.store.offer_placement(tenant, actor_id, worker_id,
                                   self.settings.worker_startup_grace_s)
        self.placed.setdefault((tenant, actor_id), set()).add(worker_id)
        self._set_count(tenant, actor_id, self._registered(tenant, actor_id))

    def release(self, worker_id: str, graceful: bool = True) -> None:
        """Graceful: ask the worker to leave (its allocation then waits for the next
        registration, and the next pass scales the job down). Otherwise SIGKILL its
        process through Nomad (the allocation restarts the task; the run is adopted)."""
        for tenant, actor_id, wid in self.store.host_workers(self.host):
            if wid != worker_id:
                continue
            if graceful:
                self.store.send_control(tenant, actor_id, worker_id, "stop",
                                        self.settings.heartbeat_ttl_s)
                continue
            alloc_id = self.store.get_worker(tenant, actor_id, worker_id).get("alloc_id")
            if alloc_id:
                self.api.signal(alloc_id, TASK, "SIGKILL")

    def lost(self, worker: dict[str, Any]) -> None:
        """The scheduler removed this worker as dead (no heartbeat): if its process is
        still in its allocation (frozen, or on a partitioned node), stop the allocation;
        Nomad places a replacement, which takes up the next registration."""
        alloc_id = worker.get("alloc_id")
        if not alloc_id:
            return
        try:
            alloc = self.api.allocation(alloc_id)
        except NomadError as exc:
            if exc.status == 404:
                return
            raise
        if not _process_ended(alloc, float(worker.get("process_start") or 0)):
            LOG.warning("worker %s is gone but its allocation %s is not: stopping it",
                        worker.get("id"), alloc_id)
            self.api.stop_allocation(alloc_id)

    def ended(self) -> list[tuple[str, str, str]]:
        """Keep each job's count at its actor's registrations (down to none: the job goes),
        and name the workers that are gone: those that left, and those whose process
        ended (its allocation stopped, or its task restarted since the worker began). One
        allocation listing per worker job."""
        gone: list[tuple[str, str, str]] = []
        for tenant, actor_id in list(self._known_counts()):
            try:
                gone += self._gone_workers(tenant, actor_id)
                self._set_count(tenant, actor_id, self._registered(tenant, actor_id))
            except BackendUnavailable as exc:
                LOG.warning("worker job of %s/%s not scaled: %s", tenant, actor_id, exc.message)
        return gone

    def _gone_workers(self, tenant: str, actor_id: str) -> list[tuple[str, str, str]]:
        allocs = {a["ID"]: a for a in self.api.allocations(worker_job_id(tenant, actor_id)).body}
        registered = {w["id"]: w for w in self.store.workers(tenant, actor_id)}
        gone = [wid for wid in self.placed.get((tenant, actor_id), set())
                if wid not in registered]
        for wid, record in registered.items():
            alloc_id = record.get("alloc_id")
            if alloc_id and _process_ended(allocs.get(alloc_id),
                                           float(record.get("process_start") or 0)):
                gone.append(wid)
        self.placed[(tenant, actor_id)] = set(registered) - set(gone)
        return [(tenant, actor_id, wid) for wid in gone]

    def drain(self, timeout_s: float) -> None:
        return None  # see the module docstring

    # -- counts -------------------------------------------------------------------------
    def _registered(self, tenant: str, actor_id: str) -> int:
        return sum(1 for w in self.store.workers(tenant, actor_id)
                   if w.get("location") == self.location)

    def _set_count(self, tenant: str, actor_id: str, count: int) -> None:
        counts = self._known_counts()
        if counts.get((tenant, actor_id)) == count:
            return
        job_id = worker_job_id(tenant, actor_id)
        if count == 0:
            self.api.deregister(job_id, purge=True)
            self.api.delete_variable(worker_variable(job_id))
            counts.pop((tenant, actor_id), None)
            return
        try:
            self.api.scale(job_id, GROUP, count, f"abaco: {count} warm workers")
        except NomadError as exc:
            if exc.status != 404:
                raise
            self.api.put_variable(worker_variable(job_id),
                                  self.settings.for_workers().as_env())
            self.api.register(worker_job(self.settings, tenant, actor_id, count,
                                         self._queue(tenant, actor_id)))
        counts[(tenant, actor_id)] = count

    def _queue(self, tenant: str, actor_id: str) -> str:
        try:
            return str(self.store.get_actor(tenant, actor_id).get("queue") or "default")
        except NotFound:
            return "default"

    def _known_counts(self) -> dict[tuple[str, str], int]:
        """The counts of the worker jobs that exist, read from Nomad once (a scheduler
        taking over from another finds its jobs), then kept here."""
        if self.counts is None:
            counts: dict[tuple[str, str], int] = {}
            for stub in self.api.jobs(PREFIX):
                job = self.api.job(stub["ID"])
                meta = (job or {}).get("Meta") or {}
                if job and not job.get("Stop") and "abaco_actor" in meta:
                    group = next(g for g in job["TaskGroups"] if g["Name"] == GROUP)
                    counts[(meta["abaco_tenant"], meta["abaco_actor"])] = int(group["Count"])
            self.counts = counts
        return self.counts


def _process_ended(alloc: dict[str, Any] | None, process_start: float) -> bool:
    """Has the worker process that began at ``process_start`` in ``alloc`` ended?"""
    if alloc is None or alloc.get("ClientStatus") in TERMINAL:
        return True
    state = (alloc.get("TaskStates") or {}).get(TASK) or {}
    if state.get("State") == "dead":
        return True
    restarted = nomad_time(state.get("LastRestart"))
    return restarted is not None and parse_iso(restarted).timestamp() > process_start
