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
import re
import threading
import time
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import docker
import docker.errors

BATCH_RESTART = {"Attempts": 3, "Delay": 15_000_000_000, "Interval": 86_400_000_000_000,
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
        for group in job["TaskGroups"]:
            for _ in range(int(group.get("Count", 1))):
                self._allocate(job, group)
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
            if alloc["JobID"] not in self.jobs and alloc["ClientStatus"] != "running":
                self._remove_container(alloc)
                del self.allocs[alloc_id]
        self.bump()

    def _allocs_of(self, job_id: str) -> list[dict[str, Any]]:
        return [a for a in self.allocs.values() if a["JobID"] == job_id]

    # -- allocations: one container per task ---------------------------------------------
    def _allocate(self, job: dict[str, Any], group: dict[str, Any]) -> None:
        task = group["Tasks"][0]
        alloc_id = str(uuid.uuid4())
        alloc = {"ID": alloc_id, "JobID": job["ID"], "TaskGroup": group["Name"],
                 "Namespace": job.get("Namespace", "default"), "ClientStatus": "pending",
                 "ClientDescription": "", "DesiredStatus": "run", "CreateIndex": self.index,
                 "ModifyIndex": self.index, "CreateTime": _now_ns(), "ModifyTime": _now_ns(),
                 "TaskStates": {task["Name"]: {"State": "pending", "Failed": False,
                                               "StartedAt": None, "FinishedAt": None,
                                               "Events": [_event("Received")]}},
                 "container": None, "task": task["Name"]}
        self.allocs[alloc_id] = alloc
        threading.Thread(target=self._run, args=(alloc, task), daemon=True).start()

    def _run(self, alloc: dict[str, Any], task: dict[str, Any]) -> None:
        state = alloc["TaskStates"][task["Name"]]
        config = task.get("Config", {})
        env = {**(task.get("Env") or {}), **self._rendered(task)}
        resources = task.get("Resources") or {}
        try:
            container = self.docker.containers.run(
                config["image"], detach=True, environment=env,
                network_mode=config.get("network_mode", "none"),
                labels={**(config.get("labels") or {}), "nomad.alloc": alloc["ID"]},
                mem_limit=f"{resources['MemoryMB']}m" if resources.get("MemoryMB") else None,
                pids_limit=config.get("pids_limit"), user=task.get("User") or None,
                cap_drop=config.get("cap_drop"), cap_add=config.get("cap_add"),
                security_opt=config.get("security_opt"))
        except docker.errors.DockerException as exc:
            with self.lock:
                state["Events"].append(_event("Driver Failure", driver_error=str(exc)))
                state.update(State="dead", Failed=True, FinishedAt=_rfc3339())
                alloc["ClientStatus"] = "failed"
            self.bump()
            return
        with self.lock:
            alloc["container"] = container.id
            if alloc["DesiredStatus"] == "stop":  # stopped while it was being placed
                with contextlib.suppress(docker.errors.APIError):
                    container.kill()
            state["Events"].append(_event("Started"))
            state.update(State="running", StartedAt=_rfc3339())
            alloc["ClientStatus"] = "running"
        self.bump()
        outcome = container.wait()
        container.reload()
        oom = bool(container.attrs["State"].get("OOMKilled"))
        code = int(outcome.get("StatusCode", -1))
        with self.lock:
            state["Events"].append(_event("Terminated", exit_code=str(code),
                                          oom_killed=str(oom).lower(), signal="0"))
            failed = code != 0
            if failed:
                state["Events"].append(_event("Not Restarting",
                                              restart_reason="Policy allows no restarts"))
            state.update(State="dead", Failed=failed, FinishedAt=_rfc3339())
            alloc["ClientStatus"] = "failed" if failed else "complete"
            alloc["ClientDescription"] = "Failed tasks" if failed else "All tasks have completed"
        self.bump()

    def _rendered(self, task: dict[str, Any]) -> dict[str, str]:
        """Templates with ``Envvars``: a ``nomadVar`` path's items become the environment."""
        env: dict[str, str] = {}
        for template in task.get("Templates") or []:
            match = _VAR_TEMPLATE.search(template.get("EmbeddedTmpl", ""))
            if template.get("Envvars") and match:
                env.update(self.variables.get(match.group(1), {}))
        return env

    def _kill(self, alloc: dict[str, Any]) -> None:
        alloc["DesiredStatus"] = "stop"
        if alloc["container"]:
            with contextlib.suppress(docker.errors.APIError):
                self.docker.containers.get(alloc["container"]).kill()

    def _remove_container(self, alloc: dict[str, Any]) -> None:
        if alloc["container"]:
            with contextlib.suppress(docker.errors.APIError):
                self.docker.containers.get(alloc["container"]).remove(force=True)

    def close(self) -> None:
        for alloc in self.allocs.values():
            self._remove_container(alloc)


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
    for group in job["TaskGroups"]:
        group.setdefault("Count", 1)
        restart = group.setdefault("RestartPolicy", {})
        for key, value in BATCH_RESTART.items():
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
        if (method, path) == ("PUT", "/v1/system/gc"):
            with state.lock:
                state.gc()
            return 200, None
        match = re.fullmatch(r"/v1/job/(.+?)(/allocations)?", path)
        if match:
            return self._job(method, match.group(1), bool(match.group(2)), query)
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
        if not alloc["container"]:
            self._text(404, f'task "{query["task"]}" not started yet. No logs available')
            return
        container = self.state.docker.containers.get(alloc["container"])
        stdout = query["type"] == "stdout"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        follow = query.get("follow") == "true"
        try:
            for chunk in container.logs(stdout=stdout, stderr=not stdout, stream=True,
                                        follow=follow):
                self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            return


def _public(alloc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in alloc.items() if k not in ("container", "task")}


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
