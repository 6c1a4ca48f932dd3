"""DockerRunner: each execution is a fresh container on a Docker engine this process reaches.

Logs and stats are followed as streams from the engine in two threads; the
main thread blocks on the container's exit with the run-time limit as its
timeout. Every container carries labels naming its execution, so a lost
worker's container can be found and killed by the scheduler.
"""

from __future__ import annotations

import io
import logging
import tarfile
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

import docker
import docker.errors
import requests

from jobs.runners.base import RunResult, RunSpec
from jobs.settings import Settings
from jobs.timeutil import now_iso, to_iso

LOG = logging.getLogger(__name__)
LABEL_EXECUTION = "abaco.execution"
LABEL_ACTOR = "abaco.actor"
LABEL_WORKER = "abaco.worker"
DOCKER_SOCKET = "/var/run/docker.sock"
STREAM_JOIN_S = 5.0


def docker_client(settings: Settings) -> docker.DockerClient:
    if settings.docker_host:
        return docker.DockerClient(base_url=settings.docker_host, version="auto", timeout=60)
    return docker.from_env(version="auto", timeout=60)


def parse_docker_time(text: str | None) -> datetime | None:
    """Docker's RFC 3339 times carry nanoseconds; Python takes microseconds."""
    if not text or text.startswith("0001-"):
        return None
    head, _, frac = text.rstrip("Z").partition(".")
    micros = (frac + "000000")[:6]
    return datetime.fromisoformat(f"{head}.{micros}+00:00")


class StatsFollower:
    """Keeps the last CPU and IO totals and the peak memory from a stats stream."""

    def __init__(self) -> None:
        self.cpu = 0
        self.io = 0
        self.mem_peak = 0

    def feed(self, sample: dict[str, Any]) -> None:
        cpu = ((sample.get("cpu_stats") or {}).get("cpu_usage") or {}).get("total_usage")
        if cpu:
            self.cpu = max(self.cpu, int(cpu))
        memory = sample.get("memory_stats") or {}
        peak = memory.get("max_usage") or memory.get("usage") or 0
        self.mem_peak = max(self.mem_peak, int(peak))
        entries = (sample.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []
        total = sum(int(e.get("value", 0)) for e in entries
                    if str(e.get("op", "")).lower() in ("read", "write"))
        self.io = max(self.io, total)


class DockerRunner:
    """Runner on the Docker engine named by settings (or the environment's default)."""

    def __init__(self, settings: Settings, client: docker.DockerClient | None = None) -> None:
        self.settings = settings
        self.client = client or docker_client(settings)

    # -- images -----------------------------------------------------------------
    def image_available(self, image: str) -> tuple[bool, str]:
        """Present, or pulled now. Returns (ok, reason when not)."""
        try:
            self.client.images.get(image)
            return True, ""
        except docker.errors.ImageNotFound:
            pass
        except (docker.errors.DockerException, requests.RequestException) as exc:
            return False, f"docker engine unavailable: {exc}"
        try:
            self.client.images.pull(image)
            return True, ""
        except (docker.errors.DockerException, requests.RequestException) as exc:
            return False, f"image {image} is not present and could not be pulled: {exc}"

    # -- executions -------------------------------------------------------------
    def run(self, spec: RunSpec, on_start: Callable[[str], None],
            on_log: Callable[[bytes], None]) -> RunResult:
        try:
            container = self.client.containers.create(**self._create_args(spec))
        except (docker.errors.DockerException, requests.RequestException) as exc:
            return _failed(f"could not create the container: {exc}")
        try:
            return self._run_created(container, spec, on_start, on_log)
        finally:
            # Off the message path: the result is already known. Not a daemon thread,
            # so a worker that exits still removes its last container first.
            threading.Thread(target=_remove_quietly, args=(container,)).start()

    def _run_created(self, container: Any, spec: RunSpec, on_start: Callable[[str], None],
                     on_log: Callable[[bytes], None]) -> RunResult:
        try:
            if spec.binary is not None:
                container.put_archive("/", _binary_tar(spec.binary))
            container.start()
        except (docker.errors.DockerException, requests.RequestException) as exc:
            if not _did_start(container):  # a timed-out start may still have started it
                return _failed(f"could not start the container: {exc}")
        on_start(now_iso())
        stats = StatsFollower()
        threads = [
            threading.Thread(target=_follow_logs, args=(container, on_log), daemon=True),
            threading.Thread(target=_follow_stats, args=(container, stats), daemon=True),
        ]
        for thread in threads:
            thread.start()
        notes = []
        try:
            container.wait(timeout=spec.max_run_time_s)
        except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
            notes.append(f"killed: exceeded the maximum run time of {spec.max_run_time_s:g} s")
            _kill_quietly(container)
        threads[0].join(STREAM_JOIN_S)
        try:
            container.reload()
            state = dict(container.attrs.get("State") or {})
        except docker.errors.NotFound:
            state = {"Status": "removed", "ExitCode": None}
            notes.append("the container was removed while it ran")
        return _result(state, stats, notes)

    def _create_args(self, spec: RunSpec) -> dict[str, Any]:
        args: dict[str, Any] = {
            "image": spec.image,
            "environment": spec.env,
            "detach": True,
            "network_mode": spec.network,
            "labels": {LABEL_EXECUTION: spec.execution_id, LABEL_ACTOR: spec.actor_id,
                       LABEL_WORKER: spec.worker_id},
            "security_opt": ["no-new-privileges"],
        }
        if spec.mem_limit:
            args["mem_limit"] = spec.mem_limit
        if spec.nano_cpus:
            args["nano_cpus"] = spec.nano_cpus
        if spec.pids_limit:
            args["pids_limit"] = spec.pids_limit
        if spec.user:
            args["user"] = spec.user
        if spec.privileged:
            args["volumes"] = {DOCKER_SOCKET: {"bind": DOCKER_SOCKET, "mode": "rw"}}
        return args

    def kill_execution(self, execution_id: str) -> bool:
        """Kill and remove the container of an execution, wherever its worker went."""
        return self._each_container(execution_id, lambda c: c.remove(force=True))

    def stop_execution(self, execution_id: str) -> bool:
        """Kill the container (cancel, drain); its worker still records and removes it."""
        return self._each_container(execution_id, lambda c: c.kill())

    def _each_container(self, execution_id: str, action: Callable[[Any], None]) -> bool:
        try:
            found = self.client.containers.list(
                all=True, filters={"label": f"{LABEL_EXECUTION}={execution_id}"})
        except (docker.errors.DockerException, requests.RequestException):
            return False
        for container in found:
            try:
                action(container)
            except (docker.errors.DockerException, requests.RequestException):
                continue
        return bool(found)


def _follow_logs(container: Any, on_log: Callable[[bytes], None]) -> None:
    try:
        for chunk in container.logs(stream=True, follow=True, stdout=True, stderr=True):
            on_log(chunk)
    except (docker.errors.DockerException, requests.RequestException) as exc:
        LOG.info("log stream of %s ended: %s", container.id, exc)


def _follow_stats(container: Any, stats: StatsFollower) -> None:
    try:
        for sample in container.stats(stream=True, decode=True):
            stats.feed(sample)
    except (docker.errors.DockerException, requests.RequestException, ValueError) as exc:
        LOG.debug("stats stream of %s ended: %s", container.id, exc)


def _remove_quietly(container: Any) -> None:
    try:
        container.remove(force=True)
    except (docker.errors.DockerException, requests.RequestException):
        LOG.warning("could not remove container %s", container.id)


def _did_start(container: Any) -> bool:
    try:
        container.reload()
    except (docker.errors.DockerException, requests.RequestException):
        return False
    return parse_docker_time((container.attrs.get("State") or {}).get("StartedAt")) is not None


def _kill_quietly(container: Any) -> None:
    try:
        container.kill()
    except (docker.errors.DockerException, requests.RequestException):
        LOG.warning("could not kill container %s", container.id)


def _binary_tar(data: bytes) -> bytes:
    """A tar holding ``/_abaco_binary_data``, readable like Abaco's FIFO."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("_abaco_binary_data")
        info.size = len(data)
        info.mode = 0o444
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _result(state: dict[str, Any], stats: StatsFollower, notes: list[str]) -> RunResult:
    started = parse_docker_time(state.get("StartedAt"))
    finished = parse_docker_time(state.get("FinishedAt"))
    runtime = (finished - started).total_seconds() if started and finished else 0.0
    return RunResult(
        started=True,
        exit_code=state.get("ExitCode"),
        final_state=state,
        start_time=to_iso(started) if started else None,
        finish_time=to_iso(finished) if finished else now_iso(),
        runtime=max(runtime, 0.0),
        cpu=stats.cpu,
        io=stats.io,
        mem_peak=stats.mem_peak,
        notes=notes,
    )


def _failed(reason: str) -> RunResult:
    return RunResult(exit_code=None, final_state={}, start_time=None, finish_time=now_iso(),
                     runtime=0.0, error=reason)
