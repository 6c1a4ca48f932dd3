"""NomadRunner: each execution one Nomad batch job running the actor image (docker driver).

- The job ID is ``abaco-<execution id>``: a retried ``start`` finds the job and
  registers none (idempotent per execution); the handle is that ID, so any worker
  re-attaches to a run whose worker died.
- Restarts and rescheduling are off; memory, CPUs, pids, network, labels and the
  kill timeout come from the spec; namespace, datacenters, node pool, priority and
  the token (``X-Nomad-Token``) from settings.
- The environment, secrets included (``defaultEnvironment`` values, the execution
  token), never appears in the job: it goes to a Nomad Variable at the job's own
  path ``nomad/jobs/<job id>``, which the task reads through a ``template`` block
  into its environment. A job's own path is readable by its tasks' workload
  identity with no further policy (Nomad 1.7+), whereas Vault would need a policy
  and a role per job; the variable is deleted with the job.
- ``wait`` blocks on ``/v1/job/:id/allocations`` with ``index``/``wait`` (no polling
  loop) until the allocation is terminal, follows the logs live
  (``/v1/client/fs/logs``), reads the exit code and OOM kill from the
  ``Terminated`` event, and stops the job at the deadline.
- Not yet here: binary messages and the results socket (the worker leaves them to
  the Docker runner for now); image checks (Nomad's nodes pull, so an image is
  judged when its run starts).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from jobs.errors import BackendUnavailable
from jobs.nomad_api import NomadAPI
from jobs.runners.base import ImageCheck, RunResult, RunSpec, StartFailed
from jobs.settings import Settings
from jobs.timeutil import now_iso

LOG = logging.getLogger(__name__)
TASK = "actor"
TERMINAL = ("complete", "failed", "lost")
KEPT_CAPABILITIES = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID"]


def job_id_for(execution_id: str) -> str:
    return f"abaco-{execution_id}"


def variable_path(job_id: str) -> str:
    return f"nomad/jobs/{job_id}"


def execution_job(spec: RunSpec, settings: Settings) -> dict[str, Any]:
    """The batch job of one execution (no environment values in it: see the module)."""
    job_id = job_id_for(spec.execution_id)
    config: dict[str, Any] = {
        "image": spec.image, "network_mode": spec.network,
        "labels": {"abaco.execution": spec.execution_id, "abaco.actor": spec.actor_id,
                   "abaco.worker": spec.worker_id, **spec.labels},
        "security_opt": ["no-new-privileges"],
    }
    if spec.pids_limit:
        config["pids_limit"] = spec.pids_limit
    if spec.confined:
        config.update(cap_drop=["ALL"], cap_add=KEPT_CAPABILITIES)
    task: dict[str, Any] = {
        "Name": TASK, "Driver": "docker", "Config": config, "User": spec.user or "",
        "KillTimeout": 5_000_000_000,
        "Resources": {"CPU": int((spec.cpus or 1.0) * 1000),
                      "MemoryMB": max(6, (spec.memory_bytes or 512 << 20) >> 20)},
        "Templates": [{"DestPath": "secrets/abaco.env", "Envvars": True,
                       "ChangeMode": "noop", "EmbeddedTmpl": (
                           f'{{{{ with nomadVar "{variable_path(job_id)}" }}}}'
                           "{{ range .Tuples }}{{ .K }}={{ .V | toJSON }}\n{{ end }}"
                           "{{ end }}")}],
    }
    group = {"Name": "run", "Count": 1, "Tasks": [task],
             "RestartPolicy": {"Attempts": 0, "Mode": "fail"},
             "ReschedulePolicy": {"Attempts": 0, "Unlimited": False}}
    return {"ID": job_id, "Name": job_id, "Type": "batch", "Namespace": settings.nomad_namespace,
            "Datacenters": [d.strip() for d in settings.nomad_datacenters.split(",")],
            "NodePool": settings.nomad_node_pool, "Priority": settings.nomad_priority,
            "Meta": {"abaco_execution": spec.execution_id, "abaco_actor": spec.actor_id},
            "TaskGroups": [group]}


class NomadRunner:
    """See the module docstring."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.api = NomadAPI(settings.nomad_addr, settings.nomad_token.reveal(),
                            settings.nomad_namespace)

    def start(self, spec: RunSpec) -> str:
        if spec.payload is not None or spec.results_socket or spec.mounts or \
                spec.engine_access:
            LOG.warning("execution %s: binary payload, results, mounts and engine access "
                        "are not carried by the Nomad runner yet", spec.execution_id)
        job_id = job_id_for(spec.execution_id)
        if self.api.job(job_id) is not None:
            return job_id  # started before: never a second run
        self.api.put_variable(variable_path(job_id), dict(spec.env))
        try:
            self.api.register(execution_job(spec, self.settings))
        except BackendUnavailable as exc:
            status = getattr(exc, "status", None)
            raise StartFailed(exc.message, transient=status is None or status >= 500
                              and "error occurred" not in exc.message) from exc
        return job_id

    def wait(self, handle: str, on_log: Callable[[bytes], None],
             deadline: float) -> RunResult:
        if self.api.job(handle) is None:  # purged (removed): its outcome is not ours to say
            return _gone(f"nomad job {handle} no longer exists")
        index, alloc, logs = 1, None, None
        killed = None
        while True:
            remaining = deadline - time.time()
            if remaining <= 0 and killed is None:
                killed = "killed: exceeded the maximum run time"
                self.api.deregister(handle)
            answer = self.api.allocations(handle, index, max(1.0, min(remaining, 300.0))
                                          if killed is None else 5.0)
            index = max(index, answer.index)
            if not answer.body:
                if self.api.job(handle) is None:
                    return _gone(f"nomad job {handle} no longer exists")
                continue
            alloc = answer.body[-1]
            if logs is None and _started(alloc):
                logs = self._follow(alloc["ID"], on_log)
            if alloc["ClientStatus"] in TERMINAL:
                break
        for follower in logs or []:
            follower.join(self.settings.log_drain_s)
        result = _result(self.api.allocation(alloc["ID"]))
        result.killed_reason = killed
        return result

    def _follow(self, alloc_id: str, on_log: Callable[[bytes], None]) -> list[threading.Thread]:
        lock = threading.Lock()

        def follow(kind: str) -> None:
            try:
                for chunk in self.api.follow_logs(alloc_id, TASK, kind):
                    with lock:
                        on_log(chunk)
            except BackendUnavailable as exc:
                LOG.warning("logs of %s (%s) not followed: %s", alloc_id, kind, exc.message)

        threads = [threading.Thread(target=follow, args=(kind,), daemon=True)
                   for kind in ("stdout", "stderr")]
        for thread in threads:
            thread.start()
        return threads

    def stop(self, handle: str, remove: bool = False) -> None:
        self.api.deregister(handle, purge=remove)
        if remove:
            self.api.delete_variable(variable_path(handle))

    def check_image(self, image: str) -> ImageCheck:
        return ImageCheck(ok=True, reason="checked by the Nomad node when a run starts")


def _started(alloc: dict[str, Any]) -> bool:
    state = (alloc.get("TaskStates") or {}).get(TASK) or {}
    return any(e.get("Type") == "Started" for e in state.get("Events") or [])


def _result(alloc: dict[str, Any]) -> RunResult:
    state = (alloc.get("TaskStates") or {}).get(TASK) or {}
    events = state.get("Events") or []
    terminated = next((e for e in reversed(events) if e.get("Type") == "Terminated"), None)
    details = (terminated or {}).get("Details") or {}
    code = details.get("exit_code")
    notes = [e.get("DisplayMessage") or e.get("Type", "") for e in events
             if e.get("Type") in ("Driver Failure", "Killed", "Not Restarting")]
    return RunResult(
        exit_code=int(code) if code not in (None, "") else None,
        start_time=_iso(state.get("StartedAt")), finish_time=_iso(state.get("FinishedAt"))
        or now_iso(), oom_killed=details.get("oom_killed") == "true",
        raw={"ClientStatus": alloc.get("ClientStatus"), "AllocationID": alloc.get("ID"),
             "OOMKilled": details.get("oom_killed") == "true"}, notes=notes)


def _iso(text: str | None) -> str | None:
    if not text or text.startswith("0001-"):
        return None
    head, _, frac = text.rstrip("Z").partition(".")
    return f"{head}.{(frac + '000000')[:6]}Z"


def _gone(note: str) -> RunResult:
    return RunResult(exit_code=None, start_time=None, finish_time=now_iso(), gone=True,
                     notes=[note])
