"""A small client of Nomad's HTTP API: what the Nomad runner and placer need.

python-nomad covers registering and reading jobs, but not blocking queries
(``index``/``wait``), streaming logs, scaling or variables, which this platform
depends on; one thin client over ``requests`` keeps every call, its token
(``X-Nomad-Token``), namespace and error mapping in one place.

Nomad answers errors as plain text (validation failures as 500); ``NomadError``
keeps the status and the text. Connection failures are ``BackendUnavailable``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests

from jobs.errors import BackendUnavailable

TERMINAL = ("complete", "failed", "lost")  # allocation client statuses that are final


def env_template(path: str, change_mode: str = "noop") -> dict[str, Any]:
    """A ``template`` block turning every item of the Nomad Variable at ``path`` into an
    environment variable. Rendering waits until the variable exists, which holds the
    task's start; secrets so reach a task without appearing in its job."""
    return {"DestPath": "secrets/abaco.env", "Envvars": True, "ChangeMode": change_mode,
            "EmbeddedTmpl": (f'{{{{ with nomadVar "{path}" }}}}'
                             "{{ range .Tuples }}{{ .K }}={{ .V | toJSON }}\n{{ end }}"
                             "{{ end }}")}


def nomad_time(text: str | None) -> str | None:
    """Nomad's RFC 3339 time (nanoseconds; unset as null or year 1) in the platform's ISO
    form (microseconds), None when unset."""
    if not text or text.startswith("0001-"):
        return None
    head, _, frac = text.rstrip("Z").partition(".")
    return f"{head}.{(frac + '000000')[:6]}Z"


class NomadError(BackendUnavailable):
    """Nomad answered an error: ``status`` and its plain-text ``text``."""

    def __init__(self, status: int, text: str, doing: str) -> None:
        super().__init__(f"nomad {doing}: {status} {text.strip()[:300]}")
        self.status, self.text = status, text


@dataclass(frozen=True)
class Blocking:
    """A blocking read's answer: its body and the index to wait past next."""

    body: Any
    index: int


class NomadAPI:
    """``addr`` like ``http://127.0.0.1:4646``; one session (kept connections)."""

    def __init__(self, addr: str, token: str = "", namespace: str = "default",
                 timeout_s: float = 10.0) -> None:
        self.addr = addr.rstrip("/")
        self.namespace = namespace
        self.timeout_s = timeout_s
        self.session = requests.Session()
        if token:
            self.session.headers["X-Nomad-Token"] = token

    # -- jobs -------------------------------------------------------------------------
    def register(self, job: dict[str, Any]) -> dict[str, Any]:
        return dict(self._call("POST", "/v1/jobs", "registering a job", json={"Job": job}))

    def job(self, job_id: str) -> dict[str, Any] | None:
        try:
            return dict(self._call("GET", f"/v1/job/{_id(job_id)}", "reading a job"))
        except NomadError as exc:
            if exc.status == 404:
                return None
            raise

    def jobs(self, prefix: str) -> list[dict[str, Any]]:
        """Stubs of the jobs whose ID starts with ``prefix``."""
        return list(self._call("GET", "/v1/jobs", "listing jobs", params={"prefix": prefix}))

    def deregister(self, job_id: str, purge: bool = False) -> None:
        """Stop the job (its allocations are killed); ``purge`` forgets it too. An
        unknown job is fine (Nomad answers 200)."""
        self._call("DELETE", f"/v1/job/{_id(job_id)}", "stopping a job",
                   params={"purge": "true"} if purge else None)

    def allocations(self, job_id: str, index: int = 0, wait_s: float = 0) -> Blocking:
        """The job's allocations; with ``index``, held until Nomad's index passes it or
        ``wait_s`` passes (a blocking query: no polling loop)."""
        params = {"index": str(index), "wait": f"{int(wait_s)}s"} if index else None
        reply = self._send("GET", f"/v1/job/{_id(job_id)}/allocations", "listing allocations",
                           params=params, timeout=wait_s + wait_s / 16 + self.timeout_s)
        return Blocking(reply.json(), int(reply.headers.get("X-Nomad-Index", "0")))

    def allocation(self, alloc_id: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/v1/allocation/{alloc_id}", "reading an allocation"))

    def stop_allocation(self, alloc_id: str) -> None:
        """Stop one allocation; Nomad reschedules a replacement for a service job."""
        self._call("POST", f"/v1/allocation/{alloc_id}/stop", "stopping an allocation")

    def signal(self, alloc_id: str, task: str, signal: str) -> None:
        self._call("POST", f"/v1/client/allocation/{alloc_id}/signal", "signalling a task",
                   json={"Task": task, "Signal": signal})

    def scale(self, job_id: str, group: str, count: int, message: str) -> None:
        self._call("POST", f"/v1/job/{_id(job_id)}/scale", "scaling a job", json={
            "Count": count, "Target": {"Group": group}, "Message": message})

    # -- logs and variables -----------------------------------------------------------------
    def follow_logs(self, alloc_id: str, task: str, kind: str) -> Iterator[bytes]:
        """The task's ``stdout`` or ``stderr`` from its start, as it grows (plain)."""
        reply = self._send("GET", f"/v1/client/fs/logs/{alloc_id}", "following logs",
                           params={"task": task, "type": kind, "follow": "true",
                                   "origin": "start", "offset": "0", "plain": "true"},
                           stream=True, timeout=None)
        try:
            yield from reply.iter_content(chunk_size=None)
        finally:
            reply.close()

    def put_variable(self, path: str, items: dict[str, str]) -> None:
        self._call("PUT", f"/v1/var/{path}", "writing a variable",
                   json={"Namespace": self.namespace, "Path": path, "Items": items})

    def variable(self, path: str) -> dict[str, str] | None:
        """The variable's items, None when there is none."""
        try:
            return dict(self._call("GET", f"/v1/var/{path}", "reading a variable")["Items"])
        except NomadError as exc:
            if exc.status == 404:
                return None
            raise

    def delete_variable(self, path: str) -> None:
        try:
            self._call("DELETE", f"/v1/var/{path}", "deleting a variable")
        except NomadError as exc:
            if exc.status != 404:
                raise

    # -- plumbing ------------------------------------------------------------------------
    def _call(self, method: str, path: str, doing: str, **kwargs: Any) -> Any:
        reply = self._send(method, path, doing, **kwargs)
        return reply.json() if reply.content else {}

    def _send(self, method: str, path: str, doing: str, params: dict[str, str] | None = None,
              timeout: float | None = -1.0, **kwargs: Any) -> requests.Response:
        query = {"namespace": self.namespace, **(params or {})}
        try:
            reply = self.session.request(method, self.addr + path, params=query,
                                         timeout=self.timeout_s if timeout == -1.0 else timeout,
                                         **kwargs)
        except requests.RequestException as exc:
            raise BackendUnavailable(f"nomad unavailable while {doing}: {exc}") from exc
        if reply.status_code >= 400:
            raise NomadError(reply.status_code, reply.text, doing)
        return reply


def _id(job_id: str) -> str:
    return quote(job_id, safe="")
