"""A Nomad test double over real HTTP: the endpoints the platform uses, each allocation a
real container on the local Docker engine.

Built from the recorded facts in ``tests/nomad_data/`` (README "Behaviours a
faithful test double must reproduce"): plain-text errors, 400 for request shape,
500 for invalid jobs, ``X-Nomad-Index`` on reads and writes, blocking queries
(``index``/``wait``, held on a condition, never polled), defaults filled in on
register, 200 on deleting an unknown job, 404 ``alloc not found`` and
``Unknown allocation`` after GC, logs as plain bytes with ``plain=true``, the exit
code and OOM kill in the ``Terminated`` event's ``Details`` (strings), times in
nanoseconds and RFC 3339.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal as signal_module
import subprocess
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import docker
import docker.errors

BATCH_RESTART = {"Attempts": 3, "Delay": 15_000_000_000, "Interval": 86_400_000_000_000,
                 "Mode": "fail", "RenderTemplates": False}
SERVICE_RESTART = {"Attempts": 2, "Delay": 15_000_000_000, "Interval": 1_800_000_000_000,
                   "Mode": "fail", "RenderTemplates": False}
_VAR_TEMPLATE = re.compile(r'nomadVar "([^"]+)"')


def _now_ns() -> int:
    return time.time_ns()


def _rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class NomadError(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status, self.text = status, text


class NomadState:
    """Jobs, allocations and variables, with the Raft-like index and its condition."""

    def __init__(self, client: docker.DockerClient) -> None:
        self.docker = client
        self.lock = threading.Condition()
        self.index = 1
        self.jobs: dict[str, dict[str, Any]] = {}
        self.allocs: dict[str, dict[str, Any]] = {}
        self.variables: dict[str, dict[str, str]] = {}
        self.requests: list[str] = []
        self.root = tempfile.mkdtemp(prefix="nomad-double-")
        self.faults: list[tuple[str, str, int, str]] = []  # (method, path prefix, status, text)

    def bump(self) -> int:
        with self.lock:
            self.index += 1
            self.lock.notify_all()
            return self.index

    def wait_past(self, index: int, wait_s: float) -> None:
        deadline = time.monotonic() + wait_s
        with self.lock:
            while self.index <= index:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self.lock.wait(left)

    # -- jobs -------------------------------------------------------------------------
    def register(self, job: dict[str, Any]) -> dict[str, Any]:
        job_id = job.get("ID")
        if not job_id or not job.get("TaskGroups"):
            raise NomadError(500, "1 error occurred:\n\t* Missing job ID or task groups\n\n")
        job = _with_defaults(job)
        known = self.jobs.get(job_id)
        if known is not None and known["Stop"] is False and \
                _spec(known) == _spec(job):
            return {"EvalID": "", "EvalCreateIndex": 0, "JobModifyIndex": known["ModifyIndex"],
                    "Index": self.index, "Warnings": ""}
        index = self.bump()
        job.update(Stop=False, Status="pending", CreateIndex=index, ModifyIndex=index,
                   SubmitTime=_now_ns())
        self.jobs[job_id] = job
        self._start_deployment(job)
        for group in job["TaskGroups"]:
            self._reconcile(job, group)
        return {"EvalID": str(uuid.uuid4()), "EvalCreateIndex": index,
                "JobModifyIndex": index, "Index": index, "Warnings": ""}

    def deregister(self, job_id: str, purge: bool) -> dict[str, Any]:
        job = self.jobs.get(job_id)
        if job is None:
            return {"EvalID": "", "EvalCreateIndex": 0, "JobModifyIndex": 0, "Index": 0}
        job["Stop"] = True
        for alloc in self._allocs_of(job_id):
            self._kill(alloc)
        if purge:
            del self.jobs[job_id]
        index = self.bump()
        return {"EvalID": str(uuid.uuid4()), "EvalCreateIndex": index,
                "JobModifyIndex": index, "Index": index}

    def gc(self) -> None:
        """``PUT /v1/system/gc``: terminal allocations of purged jobs go."""
        for alloc_id, alloc in list(self.allocs.items()):
            if alloc["JobID"] not in self.jobs and alloc["ClientStatus"] not in (
                    "pending", "running"):
                self._remove_container(alloc)
                del self.allocs[alloc_id]
        self.bump()

    def _allocs_of(self, job_id: str) -> list[dict[str, Any]]:
        return [a for a in self.allocs.values() if a["JobID"] == job_id]

    def scale(self, job_id: str, group_name: str, count: int | None) -> dict[str, Any]:
        """``POST /v1/job/:id/scale``: coded errors as Nomad's ``Job.Scale``; a service job
        with deployments (no ``Update.MaxParallel = 0``) refuses while one is active."""
        job = self.jobs.get(job_id)
        if job is None or job["Stop"]:
            raise NomadError(404, f'job "{job_id}" not found')
        group = next((g for g in job["TaskGroups"] if g["Name"] == group_name), None)
        if group is None:
            raise NomadError(400, f'task group "{group_name}" specified for scaling does not '
                                  "exist in job")
        if count is None:
            return {"EvalID": "", "EvalCreateIndex": 0, "Index": self.index,
                    "JobModifyIndex": job["ModifyIndex"]}
        if job.get("deployment_until", 0.0) > time.monotonic():
            raise NomadError(400, "job scaling blocked due to active deployment")
        group["Count"] = count
        index = self.bump()
        job["ModifyIndex"] = index
        self._start_deployment(job)
        self._reconcile(job, group)
        return {"EvalID": str(uuid.uuid4()), "EvalCreateIndex": index, "Index": index,
                "JobModifyIndex": index, "Warnings": ""}

    def stop_allocation(self, alloc_id: str) -> dict[str, Any]:
        """``POST /v1/allocation/:id/stop``: stopped (kill signal, then SIGKILL after its
        kill timeout) and, for a service job, replaced."""
        alloc = self.allocs.get(alloc_id)
        if alloc is None:
            raise NomadError(404, "alloc not found")
        self._kill(alloc)
        job = self.jobs.get(alloc["JobID"])
        if job is not None and job["Type"] == "service" and not job["Stop"]:
            for group in job["TaskGroups"]:
                if group["Name"] == alloc["TaskGroup"]:
                    self._reconcile(job, group)
        index = self.bump()
        return {"EvalID": str(uuid.uuid4()), "Index": index}

    def _start_deployment(self, job: dict[str, Any]) -> None:
        """Service jobs deploy every change unless ``Update.MaxParallel`` is 0; the double
        keeps a deployment active for its ``MinHealthyTime``."""
        update = job.get("Update") or {}
        if job["Type"] == "service" and update.get("MaxParallel", 1) != 0:
            healthy_ns = int(update.get("MinHealthyTime") or 10_000_000_000)
            job["deployment_until"] = time.monotonic() + healthy_ns / 1e9

    def _reconcile(self, job: dict[str, Any], group: dict[str, Any]) -> None:
        """Place or stop allocations until the group's live ones match its count; the
        highest indexes stop first, as Nomad's reconciler does."""
        live = sorted((a for a in self._allocs_of(job["ID"]) if a["TaskGroup"] == group["Name"]
                       and a["DesiredStatus"] == "run" and a["ClientStatus"] in
                       ("pending", "running")), key=lambda a: a["index"])
        wanted = int(group.get("Count", 1))
        for alloc in live[wanted:]:
            self._kill(alloc)
        used = {a["index"] for a in live[:wanted]}
        free = (i for i in range(wanted + len(used)) if i not in used)
        for _ in range(wanted - len(live[:wanted])):
            self._allocate(job, group, next(free))

    # -- allocations: one container (or process) per task ---------------------------------
    def _allocate(self, job: dict[str, Any], group: dict[str, Any], index: int = 0) -> None:
        alloc_id = str(uuid.uuid4())
        alloc_dir = Path(tempfile.mkdtemp(prefix="alloc-", dir=self.root))
        alloc_dir.chmod(0o777)
        alloc = {"ID": alloc_id, "JobID": job["ID"], "TaskGroup": group["Name"],
                 "Name": f"{job['ID']}.{group['Name']}[{index}]", "index": index,
                 "Namespace": job.get("Namespace", "default"), "ClientStatus": "pending",
                 "ClientDescription": "", "DesiredStatus": "run", "CreateIndex": self.index,
                 "ModifyIndex": self.index, "CreateTime": _now_ns(), "ModifyTime": _now_ns(),
                 "TaskStates": {t["Name"]: {"State": "pending", "Failed": False,
                                            "StartedAt": None, "FinishedAt": None,
                                            "Restarts": 0, "Events": [_event("Received")]}
                                for t in group["Tasks"]},
                 "handles": {}, "stopping": set(), "dir": str(alloc_dir), "job_type": job["Type"],
                 "restart": group.get("RestartPolicy") or {}}
        self.allocs[alloc_id] = alloc
        threading.Thread(target=self._run_alloc, args=(alloc, group), daemon=True).start()

    def _run_alloc(self, alloc: dict[str, Any], group: dict[str, Any]) -> None:
        """Prestart sidecars first (running before the main tasks start), then the main
        tasks; once every main task is dead the sidecars are stopped."""
        tasks = group["Tasks"]
        sidecars = [t for t in tasks if (t.get("Lifecycle") or {}).get("Hook") == "prestart"]
        mains = [t for t in tasks if t not in sidecars]
        side_threads = [self._task_thread(alloc, t) for t in sidecars]
        for task in sidecars:
            self._wait_for(lambda t=task: alloc["TaskStates"][t["Name"]]["State"] != "pending")
        if any(alloc["TaskStates"][t["Name"]]["Failed"] for t in sidecars):
            mains = []
        for thread in [self._task_thread(alloc, t) for t in mains]:
            thread.join()
        with self.lock:
            for task in sidecars:
                self._stop_task(alloc, task["Name"])
        for thread in side_threads:
            thread.join()
        with self.lock:
            failed = any(alloc["TaskStates"][t["Name"]]["Failed"] for t in tasks)
            alloc["ClientStatus"] = "failed" if failed else "complete"
            alloc["ClientDescription"] = "Failed tasks" if failed else \
                "All tasks have completed"
            alloc["ModifyTime"] = _now_ns()
        self.bump()
        self._replace_if_service(alloc, group)

    def _replace_if_service(self, alloc: dict[str, Any], group: dict[str, Any]) -> None:
        """A service allocation that failed on its own is rescheduled (a new allocation)."""
        job = self.jobs.get(alloc["JobID"])
        if job is not None and job["Type"] == "service" and not job["Stop"] and \
                alloc["DesiredStatus"] == "run":
            with self.lock:
                alloc["DesiredStatus"] = "stop"
                self._reconcile(job, group)

    def _task_thread(self, alloc: dict[str, Any], task: dict[str, Any]) -> threading.Thread:
        thread = threading.Thread(target=self._run_task, args=(alloc, task), daemon=True)
        thread.start()
        return thread

    def _run_task(self, alloc: dict[str, Any], task: dict[str, Any]) -> None:
        """Run the task, restarting it as its group's policy says while it is wanted."""
        state = alloc["TaskStates"][task["Name"]]
        attempts = int(alloc["restart"].get("Attempts", 0))
        delay_s = int(alloc["restart"].get("Delay", 0)) / 1e9
        while True:
            env = self._render(alloc, task)
            if env is None:  # stopped while waiting for its variables
                with self.lock:
                    state.update(State="dead", FinishedAt=_rfc3339())
                return
            code = self._execute(alloc, task, env)
            with self.lock:
                wanted = alloc["DesiredStatus"] == "run" and \
                    task["Name"] not in alloc["stopping"]
                again = wanted and state["Restarts"] < attempts and (
                    code != 0 or alloc["job_type"] == "service")
                if not again:
                    failed = code != 0 and not (task["Name"] in alloc["stopping"] and
                                                task.get("Lifecycle"))
                    if failed and wanted:
                        state["Events"].append(_event(
                            "Not Restarting", restart_reason="Policy allows no restarts"
                            if not attempts else "Exceeded allowed attempts"))
                    state.update(State="dead", Failed=failed, FinishedAt=_rfc3339())
                else:
                    state["Restarts"] += 1
                    state["LastRestart"] = _rfc3339()
                    state["Events"].append(_event("Restarting"))
            self.bump()
            if not again:
                return
            self._wait_for(lambda: alloc["DesiredStatus"] != "run", delay_s)

    def _render(self, alloc: dict[str, Any], task: dict[str, Any]) -> dict[str, str] | None:
        """Templates with ``Envvars``: each ``nomadVar`` path's items become environment;
        rendering waits until the variable exists (None: the allocation was stopped)."""
        env = {**(task.get("Env") or {}), "NOMAD_ALLOC_ID": alloc["ID"],
               "NOMAD_ALLOC_INDEX": str(alloc["index"]), "NOMAD_TASK_NAME": task["Name"]}
        for template in task.get("Templates") or []:
            match = _VAR_TEMPLATE.search(template.get("EmbeddedTmpl", ""))
            if not (template.get("Envvars") and match):
                continue
            path = match.group(1)
            self._wait_for(lambda p=path: p in self.variables or
                           alloc["DesiredStatus"] != "run")
            with self.lock:
                if alloc["DesiredStatus"] != "run":
                    return None
                env.update(self.variables[path])
        return env

    def _execute(self, alloc: dict[str, Any], task: dict[str, Any], env: dict[str, str]) -> int:
        """One attempt of the task: its exit code (-1 when the driver failed)."""
        state = alloc["TaskStates"][task["Name"]]
        try:
            handle = self._launch(alloc, task, env)
        except (docker.errors.DockerException, OSError) as exc:
            with self.lock:
                state["Events"].append(_event("Driver Failure", driver_error=str(exc)))
            return -1
        with self.lock:
            alloc["handles"][task["Name"]] = handle
            if alloc["DesiredStatus"] == "stop" or task["Name"] in alloc["stopping"]:
                handle.kill()  # stopped while it was being placed
            state["Events"].append(_event("Started"))
            state.update(State="running", StartedAt=state["StartedAt"] or _rfc3339())
            alloc["ClientStatus"] = "running"
        self.bump()
        code, oom = handle.wait()
        with self.lock:
            state["Events"].append(_event("Terminated", exit_code=str(code),
                                          oom_killed=str(oom).lower(), signal="0"))
        return code

    def _launch(self, alloc: dict[str, Any], task: dict[str, Any],
                env: dict[str, str]) -> Any:
        config = task.get("Config", {})
        alloc_dir = Path(alloc["dir"])
        kill_s = int(task.get("KillTimeout") or 5_000_000_000) / 1e9
        if task["Driver"] == "raw_exec":
            # raw_exec tasks inherit the client agent's environment (less its denylist)
            return _Process(alloc_dir, task["Name"], [config["command"], *config.get(
                "args", [])], {**os.environ, **env, "NOMAD_ALLOC_DIR": str(alloc_dir)}, kill_s)
        resources = task.get("Resources") or {}
        volumes = {str(alloc_dir): {"bind": "/alloc", "mode": "rw"}}
        for volume in config.get("volumes") or []:
            source, target, *mode = volume.split(":")
            if not source.startswith("../alloc/"):
                raise docker.errors.DockerException(f"volume {source} is outside the "
                                                    "allocation directory")
            volumes[str(alloc_dir / source.removeprefix("../alloc/"))] = {
                "bind": target, "mode": mode[0] if mode else "rw"}
        command = [config["command"], *config.get("args", [])] if config.get("command") \
            else None
        container = self.docker.containers.run(
            config["image"], command=command, detach=True,
            environment={**env, "NOMAD_ALLOC_DIR": "/alloc"},
            network_mode=config.get("network_mode", "none"),
            labels={**(config.get("labels") or {}), "nomad.alloc": alloc["ID"]},
            mem_limit=f"{resources['MemoryMB']}m" if resources.get("MemoryMB") else None,
            pids_limit=config.get("pids_limit"), user=task.get("User") or None,
            cap_drop=config.get("cap_drop"), cap_add=config.get("cap_add"),
            security_opt=config.get("security_opt"), volumes=volumes)
        return _Container(container, kill_s)

    def _wait_for(self, done: Any, timeout_s: float = 300.0) -> None:
        deadline = time.monotonic() + timeout_s
        with self.lock:
            while not done():
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self.lock.wait(left)

    def _stop_task(self, alloc: dict[str, Any], name: str) -> None:
        task_handle = alloc["handles"].get(name)
        alloc["stopping"].add(name)
        if task_handle is not None:
            threading.Thread(target=task_handle.stop, daemon=True).start()
        self.lock.notify_all()

    def _kill(self, alloc: dict[str, Any]) -> None:
        alloc["DesiredStatus"] = "stop"
        for task_handle in alloc["handles"].values():
            threading.Thread(target=task_handle.stop, daemon=True).start()
        self.lock.notify_all()

    def _remove_container(self, alloc: dict[str, Any]) -> None:
        for task_handle in alloc["handles"].values():
            task_handle.remove()

    def close(self) -> None:
        for alloc in self.allocs.values():
            alloc["DesiredStatus"] = "stop"
            for task_handle in alloc["handles"].values():
                task_handle.kill()
                task_handle.remove()


class _Container:
    """A docker-driver task: stop is SIGTERM, then SIGKILL after the kill timeout."""

    def __init__(self, container: Any, kill_s: float) -> None:
        self.container, self.kill_s = container, kill_s

    def wait(self) -> tuple[int, bool]:
        outcome = self.container.wait()
        self.container.reload()
        return int(outcome.get("StatusCode", -1)), bool(
            self.container.attrs["State"].get("OOMKilled"))

    def stop(self) -> None:
        with contextlib.suppress(docker.errors.APIError):
            self.container.stop(timeout=max(1, int(self.kill_s)))

    def kill(self, signal: str = "SIGKILL") -> None:
        with contextlib.suppress(docker.errors.APIError):
            self.container.kill(signal=signal)

    def remove(self) -> None:
        with contextlib.suppress(docker.errors.APIError):
            self.container.remove(force=True)

    def logs(self, stdout: bool, follow: bool) -> Any:
        return self.container.logs(stdout=stdout, stderr=not stdout, stream=True,
                                   follow=follow)


class _Process:
    """A raw_exec task: a process on this host, its output in the allocation's logs."""

    def __init__(self, alloc_dir: Path, name: str, argv: list[str], env: dict[str, str],
                 kill_s: float) -> None:
        logs = alloc_dir / "logs"
        logs.mkdir(exist_ok=True)
        self.out, self.err = logs / f"{name}.stdout.0", logs / f"{name}.stderr.0"
        with open(self.out, "ab") as out, open(self.err, "ab") as err:
            self.process = subprocess.Popen(argv, env=env, stdout=out, stderr=err,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        self.kill_s = kill_s

    def wait(self) -> tuple[int, bool]:
        return self.process.wait(), False

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(self.kill_s)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def kill(self, signal: str = "SIGKILL") -> None:
        if self.process.poll() is None:
            self.process.send_signal(getattr(signal_module, signal))

    def remove(self) -> None:
        return None

    def logs(self, stdout: bool, follow: bool) -> Any:
        yield (self.out if stdout else self.err).read_bytes()


def _event(kind: str, **details: str) -> dict[str, Any]:
    return {"Type": kind, "Time": _now_ns(), "Details": details, "DisplayMessage": kind}


def _spec(job: dict[str, Any]) -> str:
    keep = {k: v for k, v in job.items() if k not in (
        "Stop", "Status", "CreateIndex", "ModifyIndex", "SubmitTime")}
    return json.dumps(keep, sort_keys=True)


def _with_defaults(job: dict[str, Any]) -> dict[str, Any]:
    """Omitted policies filled field by field, as Nomad does on register."""
    job = json.loads(json.dumps(job))
    job.setdefault("Type", "service")
    job.setdefault("Namespace", "default")
    defaults = SERVICE_RESTART if job["Type"] == "service" else BATCH_RESTART
    for group in job["TaskGroups"]:
        group.setdefault("Count", 1)
        restart = group.setdefault("RestartPolicy", {})
        for key, value in defaults.items():
            restart.setdefault(key, value)
    return job


class _Handler(BaseHTTPRequestHandler):
    state: NomadState
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        return None

    def do_GET(self) -> None:  # noqa: N802 - http.server's names
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._serve("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        path = unquote(parts.path)
        self.state.requests.append(f"{method} {path}")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        fault = next((f for f in self.state.faults if f[0] == method and
                      path.startswith(f[1])), None)
        if fault is not None:  # an injected failure, answered once, as Nomad would
            self.state.faults.remove(fault)
            self._text(fault[2], fault[3])
            return
        try:
            if method == "GET" and path.startswith("/v1/client/fs/logs/"):
                self._logs(path.rsplit("/", 1)[1], query)
                return
            status, reply = self._route(method, path, query, body)
        except NomadError as exc:
            self._text(exc.status, exc.text)
            return
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Nomad-Index", str(self.state.index))
        self.send_header("X-Nomad-Knownleader", "true")
        self.send_header("X-Nomad-Lastcontact", "0")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _text(self, status: int, text: str) -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("X-Nomad-Index", str(self.state.index))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(self, method: str, path: str, query: dict[str, str],
               body: bytes) -> tuple[int, Any]:
        state = self.state
        if (method, path) == ("POST", "/v1/jobs"):
            payload = _json(body)
            if not isinstance(payload.get("Job"), dict):
                raise NomadError(400, "Job must be specified")
            with state.lock:
                return 200, state.register(payload["Job"])
        if (method, path) == ("GET", "/v1/jobs"):
            with state.lock:
                return 200, [{"ID": j["ID"], "Name": j["Name"], "Type": j["Type"],
                              "Status": "dead" if j["Stop"] else "running", "Stop": j["Stop"],
                              "ModifyIndex": j["ModifyIndex"]} for j in state.jobs.values()
                             if j["ID"].startswith(query.get("prefix", ""))]
        match = re.fullmatch(r"/v1/client/allocation/([^/]+)/signal", path)
        if match and method == "POST":
            return self._signal(match.group(1), _json(body))
        if (method, path) == ("PUT", "/v1/system/gc"):
            with state.lock:
                state.gc()
            return 200, None
        match = re.fullmatch(r"/v1/job/(.+?)/scale", path)
        if match and method == "POST":
            return self._scale(match.group(1), _json(body))
        match = re.fullmatch(r"/v1/job/(.+?)(/allocations)?", path)
        if match:
            return self._job(method, match.group(1), bool(match.group(2)), query)
        match = re.fullmatch(r"/v1/allocation/([^/]+)/stop", path)
        if match and method in ("POST", "PUT"):
            with state.lock:
                return 200, state.stop_allocation(match.group(1))
        match = re.fullmatch(r"/v1/allocation/([^/]+)", path)
        if match and method == "GET":
            alloc = state.allocs.get(match.group(1))
            if alloc is None:
                raise NomadError(404, "alloc not found")
            return 200, _public(alloc)
        match = re.fullmatch(r"/v1/var/(.+)", path)
        if match:
            return self._variable(method, match.group(1), body)
        raise NomadError(404, f"Invalid URL or method: {method} {path}")

    def _job(self, method: str, job_id: str, allocations: bool,
             query: dict[str, str]) -> tuple[int, Any]:
        state = self.state
        if allocations and method == "GET":
            index = _int(query.get("index", "0"), "Invalid index")
            if index:
                state.wait_past(index, min(_wait_s(query.get("wait", "5m")), 300.0))
            with state.lock:
                return 200, [_public(a) for a in state._allocs_of(job_id)]
        if method == "GET":
            job = state.jobs.get(job_id)
            if job is None:
                raise NomadError(404, "job not found")
            return 200, job
        if method == "DELETE":
            with state.lock:
                return 200, state.deregister(job_id, query.get("purge") == "true")
        raise NomadError(405, "Invalid method")

    def _signal(self, alloc_id: str, body: dict[str, Any]) -> tuple[int, Any]:
        alloc = self.state.allocs.get(alloc_id)
        if alloc is None:
            raise NomadError(404, f'Unknown allocation "{alloc_id}"')
        handles = alloc["handles"]
        targets = [handles[body["Task"]]] if body.get("Task") in handles else \
            list(handles.values()) if not body.get("Task") else []
        if not targets:
            raise NomadError(400, f'Failed to signal task: {body.get("Task")}, err: task not '
                                  "running")
        for task_handle in targets:
            task_handle.kill(body.get("Signal") or "SIGKILL")
        return 200, {}

    def _scale(self, job_id: str, body: dict[str, Any]) -> tuple[int, Any]:
        group = (body.get("Target") or {}).get("Group")
        if not group:
            raise NomadError(400, "missing task group name")
        if not (body.get("Message") or body.get("Error")):
            raise NomadError(400, "one of Message or Error must be specified")
        count = body.get("Count")
        if count is not None and (not isinstance(count, int) or count < 0):
            raise NomadError(400, "scaling action count can't be negative")
        with self.state.lock:
            return 200, self.state.scale(job_id, group, count)

    def _variable(self, method: str, var_path: str, body: bytes) -> tuple[int, Any]:
        state = self.state
        if method == "PUT":
            items = _json(body).get("Items")
            if not isinstance(items, dict):
                raise NomadError(400, "variable missing Items")
            state.variables[var_path] = {str(k): str(v) for k, v in items.items()}
            state.bump()
            return 200, {"Path": var_path, "Items": state.variables[var_path]}
        if method == "GET":
            if var_path not in state.variables:
                raise NomadError(404, "variable not found")
            return 200, {"Path": var_path, "Items": state.variables[var_path]}
        if method == "DELETE":
            state.variables.pop(var_path, None)
            state.bump()
            return 200, None
        raise NomadError(405, "Invalid method")

    def _logs(self, alloc_id: str, query: dict[str, str]) -> None:
        alloc = self.state.allocs.get(alloc_id)
        if alloc is None:
            self._text(404, f'Unknown allocation "{alloc_id}"')
            return
        if not query.get("task") or query.get("type") not in ("stdout", "stderr"):
            self._text(400, "must include task and type (stdout or stderr)")
            return
        task_handle = alloc["handles"].get(query["task"])
        if task_handle is None:
            self._text(404, f'task "{query["task"]}" not started yet. No logs available')
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        follow = query.get("follow") == "true"
        try:
            for chunk in task_handle.logs(query["type"] == "stdout", follow):
                self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            return


INTERNAL = ("handles", "stopping", "dir", "job_type", "restart", "index")


def _public(alloc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in alloc.items() if k not in INTERNAL}


def _json(body: bytes) -> dict[str, Any]:
    if not body:
        raise NomadError(400, "Request body is empty")
    try:
        value = json.loads(body)
    except ValueError as exc:
        raise NomadError(400, f"Failed to decode request body: {exc}") from None
    return value if isinstance(value, dict) else {}


def _int(text: str, problem: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise NomadError(400, problem) from None


def _wait_s(text: str) -> float:
    match = re.fullmatch(r"(\d+)(ms|s|m)", text)
    if not match:
        raise NomadError(400, "Invalid wait time")
    value, unit = int(match.group(1)), match.group(2)
    return value / 1000 if unit == "ms" else value * (60 if unit == "m" else 1)


class NomadDouble:
    """``with NomadDouble() as address:`` a double serving on loopback."""

    def __init__(self, client: docker.DockerClient | None = None) -> None:
        self.state = NomadState(client or docker.from_env())
        handler = type("Handler", (_Handler,), {"state": self.state})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> NomadDouble:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.state.close()


def on_double(settings: Any, double: NomadDouble, **changes: Any) -> Any:
    """``settings`` for runs through ``double`` (the relay image built by the tests)."""
    return settings.replace(**{"runner": "nomad", "nomad_addr": double.address,
                               "nomad_relay_image": "abaco-test-relay", **changes})
