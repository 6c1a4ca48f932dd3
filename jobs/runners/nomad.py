"""NomadRunner: each execution one Nomad batch job running the actor image (docker driver).

- The job ID is ``abaco-<execution id>``: a retried ``start`` finds the job and
  registers none (idempotent per execution); the handle is that ID, so any worker
  re-attaches to a run whose worker died.
- Restarts and rescheduling are off; memory, CPUs, pids, network, labels and the
  kill timeout come from the spec; namespace, datacenters, node pool, priority and
  the token (``X-Nomad-Token``) from settings.
- The environment, secrets included (``defaultEnvironment`` values, the execution
  token), never appears in the job: it goes to a Nomad Variable at the actor task's
  own path ``nomad/jobs/<job id>/run/actor``, which the task reads through a
  ``template`` block into its environment. A job's own paths are readable by its
  tasks' workload identity with no further policy (Nomad 1.7+), whereas Vault would
  need a policy and a role per job; the variables are deleted with the job.
- Abaco's container contract travels through a sidecar, the results relay
  (``jobs.results_relay``, image ``nomad_relay_image``), a prestart task of the same
  group sharing the allocation directory: it writes the binary message (from its
  own variable) and binds the results socket, both mounted into the actor task,
  then says ``ready`` on its stdout. Only then does this runner write the actor
  task's variable, so the actor cannot start before the socket exists (its
  template waits for the variable). Results come back as lines of the relay's
  stdout, read through the same log API as the actor's logs, and are handed to the
  worker's results socket in order.
- ``wait`` blocks on ``/v1/job/:id/allocations`` with ``index``/``wait`` (no polling
  loop) until the allocation is terminal, follows the logs live
  (``/v1/client/fs/logs``), reads the exit code and OOM kill from the
  ``Terminated`` event, and stops the job at the deadline.
- Image checks: Nomad's nodes pull, so an image is judged when its run starts.
- Not carried: host mounts and the engine's socket (privileged features of the
  Docker runner; a Nomad cluster grants those through its own host volumes).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from jobs import results_relay
from jobs.errors import BackendUnavailable
from jobs.lifecycle import Backoff
from jobs.nomad_api import TERMINAL, NomadAPI, NomadError, env_template, nomad_time
from jobs.results import CONTAINER_PATH as RESULTS_PATH
from jobs.runners.base import IdleRun, ImageCheck, RunResult, RunSpec, StartFailed
from jobs.settings import Settings
from jobs.timeutil import now_iso

LOG = logging.getLogger(__name__)
T = TypeVar("T")
GROUP, TASK, RELAY = "run", "actor", "relay"
KEPT_CAPABILITIES = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID"]
PAYLOAD_PATH = "/_abaco_binary_data"
FAILURE_EVENTS = ("Driver Failure", "Killed", "Not Restarting", "Failed Validation",
                  "Setup Failure", "Template")
# A Nomad Variable holds at most 64 KiB; the binary message travels base64-encoded in one.
MAX_PAYLOAD_BYTES = 45_000


def job_id_for(execution_id: str) -> str:
    return f"abaco-{execution_id}"


def variable_path(job_id: str, task: str = TASK) -> str:
    """The task's own variable path, readable by its workload identity alone."""
    return f"nomad/jobs/{job_id}/{GROUP}/{task}"


def staged_path(job_id: str) -> str:
    """Where the actor task's environment waits, at the job's own path (no template reads
    it), until the relay is ready: any worker, not only the one that started the run, can
    then hand it over."""
    return f"nomad/jobs/{job_id}"


def _actor_task(spec: RunSpec, job_id: str) -> dict[str, Any]:
    config: dict[str, Any] = {
        "image": spec.image, "network_mode": spec.network,
        "labels": {"abaco.execution": spec.execution_id, "abaco.actor": spec.actor_id,
                   "abaco.worker": spec.worker_id, **spec.labels},
        "security_opt": ["no-new-privileges"],
        "volumes": [f"../alloc/{results_relay.SOCKET_NAME}:{RESULTS_PATH}"],
    }
    if spec.payload is not None:
        config["volumes"].append(f"../alloc/{results_relay.PAYLOAD_NAME}:{PAYLOAD_PATH}:ro")
    if spec.pids_limit:
        config["pids_limit"] = spec.pids_limit
    if spec.confined:
        config.update(cap_drop=["ALL"], cap_add=KEPT_CAPABILITIES)
    return {"Name": TASK, "Driver": "docker", "Config": config, "User": spec.user or "",
            "KillTimeout": 5_000_000_000,
            "Resources": {"CPU": int((spec.cpus or 1.0) * 1000),
                          "MemoryMB": max(6, (spec.memory_bytes or 512 << 20) >> 20)},
            "Templates": [env_template(variable_path(job_id, TASK))]}


def _relay_task(job_id: str, settings: Settings) -> dict[str, Any]:
    return {"Name": RELAY, "Driver": "docker",
            "Lifecycle": {"Hook": "prestart", "Sidecar": True},
            "Config": {"image": settings.nomad_relay_image, "network_mode": "none",
                       "command": "python3", "args": ["-m", "jobs.results_relay"],
                       "security_opt": ["no-new-privileges"]},
            "KillTimeout": 5_000_000_000, "Resources": {"CPU": 50, "MemoryMB": 32},
            "Templates": [env_template(variable_path(job_id, RELAY))]}


def execution_job(spec: RunSpec, settings: Settings) -> dict[str, Any]:
    """The batch job of one execution (no environment values in it: see the module)."""
    job_id = job_id_for(spec.execution_id)
    group = {"Name": GROUP, "Count": 1,
             "Tasks": [_relay_task(job_id, settings), _actor_task(spec, job_id)],
             "RestartPolicy": {"Attempts": 0, "Mode": "fail"},
             "ReschedulePolicy": {"Attempts": 0, "Unlimited": False}}
    return {"ID": job_id, "Name": job_id, "Type": "batch", "Namespace": settings.nomad_namespace,
            "Datacenters": [d.strip() for d in settings.nomad_datacenters.split(",")],
            "NodePool": settings.node_pool_for(spec.queue), "Priority": settings.nomad_priority,
            "Meta": {"abaco_execution": spec.execution_id, "abaco_actor": spec.actor_id,
                     "abaco_queue": spec.queue},
            "TaskGroups": [group]}


@dataclass
class _Pending:
    """What this process still owes a run it started: the actor task's environment
    (written once the relay is ready) and where results go."""

    env: dict[str, str]
    results_socket: str | None


class NomadRunner:
    """See the module docstring."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.api = NomadAPI(settings.nomad_addr, settings.nomad_token.reveal(),
                            settings.nomad_namespace)
        self.pending: dict[str, _Pending] = {}

    def start(self, spec: RunSpec) -> str:
        if spec.mounts or spec.engine_access:
            LOG.warning("execution %s: host mounts and engine access are not carried by "
                        "the Nomad runner", spec.execution_id)
        job_id = job_id_for(spec.execution_id)
        if self.api.job(job_id) is not None:
            return job_id  # started before: never a second run
        relay_items = _relay_items(spec)
        self.pending[job_id] = _Pending(dict(spec.env), spec.results_socket)
        try:
            self.api.put_variable(staged_path(job_id), dict(spec.env))
            self.api.put_variable(variable_path(job_id, RELAY), relay_items)
            self.api.register(execution_job(spec, self.settings))
        except BackendUnavailable as exc:
            self.pending.pop(job_id, None)
            self._forget_variables(job_id)
            status = getattr(exc, "status", None)
            raise StartFailed(exc.message, transient=status is None or status >= 500
                              and "error occurred" not in exc.message) from exc
        return job_id

    def wait(self, handle: str, on_log: Callable[[bytes], None],
             deadline: float) -> RunResult:
        try:
            return self._wait(handle, on_log, deadline)
        finally:
            self.pending.pop(handle, None)

    def _wait(self, handle: str, on_log: Callable[[bytes], None],
              deadline: float) -> RunResult:
        ask = Patient(self.settings)
        if ask(lambda: self.api.job(handle)) is None:  # purged: its outcome is not ours
            return _gone(f"nomad job {handle} no longer exists")
        index, alloc, killed = 1, None, None
        followers: dict[str, threading.Thread] = {}
        while True:
            remaining = deadline - time.time()
            if remaining <= 0 and killed is None:
                killed = "killed: exceeded the maximum run time"
                ask(lambda: self.api.deregister(handle))
            wait_s = max(1.0, min(remaining, 300.0)) if killed is None else 5.0
            answer = ask(functools.partial(self.api.allocations, handle, index, wait_s))
            index = max(index, answer.index)
            if not answer.body:
                if killed is not None:  # stopped before Nomad ever placed it
                    return RunResult(exit_code=None, start_time=None, finish_time=now_iso(),
                                     killed_reason=killed,
                                     notes=["Nomad never placed the run"])
                if ask(lambda: self.api.job(handle)) is None:
                    return _gone(f"nomad job {handle} no longer exists")
                continue
            alloc = answer.body[-1]
            self._follow_started(handle, alloc, on_log, followers)
            if alloc["ClientStatus"] in TERMINAL:
                break
        for follower in followers.values():
            follower.join(self.settings.log_drain_s)
        result = _result(ask(lambda: self.api.allocation(alloc["ID"])))
        result.killed_reason = killed
        return result

    def _follow_started(self, handle: str, alloc: dict[str, Any],
                        on_log: Callable[[bytes], None],
                        followers: dict[str, threading.Thread]) -> None:
        """Follow each task's output once it has started: the relay's (readiness and
        results), the actor's stdout and stderr (its logs)."""
        lock = threading.Lock()

        def to_log(chunk: bytes) -> None:
            with lock:
                on_log(chunk)

        wanted = {RELAY: [("stdout", RelayReader(self, handle).feed)],
                  TASK: [("stdout", to_log), ("stderr", to_log)]}
        for task, streams in wanted.items():
            if task in followers or not _task_started(alloc, task):
                continue
            for kind, sink in streams:
                thread = threading.Thread(target=self._follow, daemon=True,
                                          args=(alloc["ID"], task, kind, sink))
                thread.start()
                followers[task if kind == "stdout" else f"{task}/{kind}"] = thread

    def _follow(self, alloc_id: str, task: str, kind: str,
                sink: Callable[[bytes], None]) -> None:
        try:
            for chunk in self.api.follow_logs(alloc_id, task, kind):
                sink(chunk)
        except BackendUnavailable as exc:
            LOG.warning("%s of %s/%s not followed: %s", kind, alloc_id, task, exc.message)

    def release_actor(self, handle: str) -> None:
        """The relay is ready: hand the actor task its environment (from memory in the
        process that started the run, else from where it was staged: a worker adopting a
        run whose worker died before this point)."""
        pending = self.pending.get(handle)
        try:
            env = pending.env if pending is not None else \
                self.api.variable(staged_path(handle))
            if env is not None:
                self.api.put_variable(variable_path(handle, TASK), env)
        except BackendUnavailable as exc:
            LOG.warning("run %s: environment not handed over: %s", handle, exc.message)

    def deliver_result(self, handle: str, data: bytes) -> None:
        """One result, to the worker's results socket, cut just past the size it keeps
        so the worker sees (and says) that it was cut."""
        pending = self.pending.get(handle)
        if pending is None or not pending.results_socket:
            return
        with contextlib.suppress(OSError), \
                socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(data[:self.settings.max_result_bytes + 1], pending.results_socket)

    def stop(self, handle: str, remove: bool = False) -> None:
        self.api.deregister(handle, purge=remove)
        if remove:
            for path in (variable_path(handle, TASK), variable_path(handle, RELAY),
                         staged_path(handle)):
                self.api.delete_variable(path)

    def _forget_variables(self, job_id: str) -> None:
        """A refused job leaves no environment (secrets) behind in Nomad."""
        for path in (staged_path(job_id), variable_path(job_id, RELAY)):
            try:
                self.api.delete_variable(path)
            except BackendUnavailable as exc:
                LOG.warning("variable %s of a refused job not deleted: %s", path, exc.message)

    def check_image(self, image: str) -> ImageCheck:
        return ImageCheck(ok=True, reason="checked by the Nomad node when a run starts")

    def prepare(self, spec: RunSpec) -> None:
        """Nothing is made ahead: Nomad places each run as a job of its own, and a
        placed allocation cannot be handed a job later."""

    def discard_prepared(self, worker_id: str) -> None:
        """Nothing was prepared."""

    def prune_prepared(self, platform: str) -> int:
        """Nothing is ever prepared."""
        return 0

    def idle_runs(self, platform: str, grace_s: float) -> list[IdleRun]:
        """Nomad collects its ended batch jobs itself."""
        return []


class Patient:
    """Calls to Nomad that ride out an outage (a leader election answers 500 "No cluster
    leader") with growing pauses, for at most ``outage_patience_s``; then the error."""

    def __init__(self, settings: Settings) -> None:
        self.patience_s = settings.outage_patience_s
        self.backoff = Backoff(settings.backoff_first_s, settings.backoff_max_s)
        self.pause = threading.Event()

    def __call__(self, call: Callable[[], T]) -> T:
        give_up = time.monotonic() + self.patience_s
        while True:
            try:
                answer = call()
            except NomadError as exc:
                if exc.status < 500 or time.monotonic() >= give_up:
                    raise
                LOG.warning("nomad answered %s; retrying", exc.message)
            except BackendUnavailable as exc:
                if time.monotonic() >= give_up:
                    raise
                LOG.warning("%s; retrying", exc.message)
            else:
                self.backoff.reset()
                return answer
            self.pause.wait(self.backoff.next())


class RelayReader:
    """Turns the relay's stdout back into events: ``ready``, then one result per line."""

    def __init__(self, runner: NomadRunner, handle: str) -> None:
        self.runner, self.handle = runner, handle
        self.buffer = b""

    def feed(self, chunk: bytes) -> None:
        self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            self._line(line.decode("ascii", "replace"))

    def _line(self, line: str) -> None:
        if line == results_relay.READY:
            self.runner.release_actor(self.handle)
        elif line.startswith(results_relay.PREFIX):
            try:
                data = base64.b64decode(line[len(results_relay.PREFIX):], validate=True)
            except ValueError:
                LOG.warning("relay of %s: a malformed result line was dropped", self.handle)
                return
            self.runner.deliver_result(self.handle, data)


def _relay_items(spec: RunSpec) -> dict[str, str]:
    if spec.payload is None:
        return {"ABACO_RELAY": "1"}
    data = spec.payload.read()
    if len(data) > MAX_PAYLOAD_BYTES:
        raise StartFailed(f"a binary message of {len(data)} bytes is larger than the "
                          f"{MAX_PAYLOAD_BYTES} bytes the Nomad runner carries (it travels "
                          "in a Nomad Variable, at most 64 KiB)", transient=False)
    return {"ABACO_PAYLOAD_B64": base64.b64encode(data).decode()}


def _task_started(alloc: dict[str, Any], task: str) -> bool:
    state = (alloc.get("TaskStates") or {}).get(task) or {}
    return any(e.get("Type") == "Started" for e in state.get("Events") or [])


def _result(alloc: dict[str, Any]) -> RunResult:
    states = alloc.get("TaskStates") or {}
    state = states.get(TASK) or {}
    events = state.get("Events") or []
    terminated = next((e for e in reversed(events) if e.get("Type") == "Terminated"), None)
    details = (terminated or {}).get("Details") or {}
    code = details.get("exit_code")
    notes = [f"{prefix}{e.get('DisplayMessage') or e.get('Type', '')}"
             for prefix, task in (("", TASK), ("results relay: ", RELAY))
             for e in (states.get(task) or {}).get("Events") or []
             if e.get("Type") in FAILURE_EVENTS]
    return RunResult(
        exit_code=int(code) if code not in (None, "") else None,
        start_time=nomad_time(state.get("StartedAt")),
        finish_time=nomad_time(state.get("FinishedAt")) or now_iso(),
        oom_killed=details.get("oom_killed") == "true",
        raw={"ClientStatus": alloc.get("ClientStatus"), "AllocationID": alloc.get("ID"),
             "OOMKilled": details.get("oom_killed") == "true"}, notes=notes)


def _gone(note: str) -> RunResult:
    return RunResult(exit_code=None, start_time=None, finish_time=now_iso(), gone=True,
                     notes=[note])
