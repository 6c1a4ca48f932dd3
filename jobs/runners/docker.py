"""DockerRunner: each execution is a fresh container on a Docker engine this process reaches.

The container's name is derived from the execution, so starting twice is refused
by the engine itself, and its id is the handle. Logs and stats are followed as
streams in two threads; the caller blocks on the container's exit until the
deadline. Containers outlive their worker (run the engine with live-restore so
they also outlive an engine restart): a new worker waits on the same handle.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import tarfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import docker
import docker.errors
import requests

from jobs.errors import BackendUnavailable
from jobs.results import CONTAINER_PATH as RESULTS_PATH
from jobs.runners import shim
from jobs.runners.base import (
    LABEL_PLATFORM,
    IdleRun,
    ImageCheck,
    RunResult,
    RunSpec,
    StartFailed,
)
from jobs.runners.prewarm import (
    NAME_PREFIX,
    NotPrewarmed,
    Prewarmer,
    prune_abandoned,
    split_handle,
    undelivered,
)
from jobs.settings import Settings
from jobs.timeutil import now_iso, parse_docker_time, to_iso

LOG = logging.getLogger(__name__)
LABEL_EXECUTION = "abaco.execution"
LABEL_ACTOR = "abaco.actor"
LABEL_WORKER = "abaco.worker"
LABEL_LIMIT = "abaco.max-run-time"
DOCKER_SOCKET = "/var/run/docker.sock"



# What a plain actor keeps of Docker's default capabilities: owning and changing its own
# files and processes. Dropped: NET_RAW, NET_BIND_SERVICE, MKNOD, AUDIT_WRITE, SETFCAP,
# SETPCAP and SYS_CHROOT.
KEPT_CAPABILITIES = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID"]


def engine_socket(settings: Settings) -> str | None:
    """The Unix socket of the engine this runner uses (``docker_host``, else
    ``DOCKER_HOST``, else Docker's default); None for an engine reached over TCP."""
    url = settings.docker_host or os.environ.get("DOCKER_HOST") or f"unix://{DOCKER_SOCKET}"
    return url[len("unix://"):] if url.startswith("unix://") else None


def docker_client(settings: Settings) -> docker.DockerClient:
    if settings.docker_host:
        return docker.DockerClient(base_url=settings.docker_host, version="auto",
                                   timeout=int(settings.docker_timeout_s))
    return docker.from_env(version="auto", timeout=int(settings.docker_timeout_s))


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


ENGINE_ERRORS = (docker.errors.DockerException, requests.RequestException)


def container_name(spec: RunSpec) -> str:
    """Derived from the execution, so the engine itself refuses a second container."""
    return f"abaco-{spec.tenant}-{spec.actor_id}-{spec.execution_id}"


class DockerRunner:
    """Runner on the Docker engine named by settings (or the environment's default)."""

    def __init__(self, settings: Settings, client: docker.DockerClient | None = None) -> None:
        self.settings = settings
        self._client = client
        self._mine: dict[str, Any] = {}  # handle -> container this process started
        self._prewarmer: Prewarmer | None = None
        self._side = ThreadPoolExecutor(max_workers=4, thread_name_prefix="docker-side")
        self._prewarm_checked = False

    @property
    def client(self) -> docker.DockerClient:
        """Made on first use: a worker that starts while the engine restarts must not die
        of it (asking the engine its API version is a request)."""
        if self._client is None:
            self._client = docker_client(self.settings)
        return self._client

    # -- images -----------------------------------------------------------------
    def check_image(self, image: str) -> ImageCheck:
        """Present, or pulled now."""
        try:
            self.client.images.get(image)
            return ImageCheck(True)
        except docker.errors.ImageNotFound:
            pass
        except ENGINE_ERRORS as exc:
            return ImageCheck(False, f"docker engine unavailable: {exc}", transient=True)
        try:
            self.client.images.pull(image)
            return ImageCheck(True)
        except (docker.errors.NotFound, docker.errors.ImageNotFound) as exc:
            return ImageCheck(False, f"image {image} is not present and could not be "
                                     f"pulled: {exc}")
        except ENGINE_ERRORS as exc:
            if _engine_down(exc):
                return ImageCheck(False, f"docker engine unavailable: {exc}", transient=True)
            return ImageCheck(False, f"image {image} is not present and could not be "
                                     f"pulled: {exc}")

    # -- prewarmed containers ---------------------------------------------------------
    def prepare(self, spec: RunSpec) -> None:
        """Make the worker's next container now, ahead of its message (``prewarm.py``)."""
        prewarmer = self._prewarm()
        if prewarmer is not None:
            prewarmer.prepare(spec)

    def discard_prepared(self, worker_id: str) -> None:
        if self._prewarmer is not None:
            self._prewarmer.discard(worker_id)

    def prune_prepared(self, platform: str) -> int:
        """Remove what prepared runs of ``platform``'s dead workers left on this engine
        (see ``prewarm.prune_abandoned``); the scheduler's sweep calls it."""
        try:
            return prune_abandoned(self.client, self.settings.docker_timeout_s, platform)
        except ENGINE_ERRORS as exc:
            LOG.info("prewarmed leftovers not pruned: %s", exc)
            return 0

    def idle_runs(self, platform: str, grace_s: float) -> list[IdleRun]:
        """This platform's execution containers made and never started (their worker
        died in between) or ended and not removed (it died after), idle for longer
        than ``grace_s``."""
        try:
            found = self.client.containers.list(all=True, filters={
                "label": [f"{LABEL_PLATFORM}={platform}"], "status": ["created", "exited"]})
        except ENGINE_ERRORS as exc:
            LOG.info("idle runs not listed: %s", exc)
            return []
        return [run for container in found
                if (run := _idle_run(container, grace_s)) is not None]

    def _prewarm(self) -> Prewarmer | None:
        """Made on first use: on (the ``prewarm`` setting), with an engine on this host
        (the shim is bind-mounted from here) and a static busybox to mount."""
        if self._prewarm_checked:
            return self._prewarmer
        self._prewarm_checked = True
        if self.settings.prewarm != "on" or engine_socket(self.settings) is None:
            return None
        busybox = shim.find_busybox(self.settings.prewarm_busybox)
        if busybox is None:
            LOG.warning("prewarmed containers are off: no static busybox found (install "
                        "busybox-static, or set prewarm_busybox)")
            return None
        try:
            shim.install(self.settings.shim_path, busybox)
        except OSError as exc:
            LOG.warning("prewarmed containers are off: cannot install the shim: %s", exc)
            return None
        self._prewarmer = Prewarmer(lambda: self.client, self._create_args,
                                    self.settings.shim_path, self.settings.docker_timeout_s)
        return self._prewarmer

    def _start_prewarmed(self, spec: RunSpec) -> str:
        if self._prewarmer is None:
            raise NotPrewarmed("prewarming is off")
        prepared = self._prewarmer.take(spec)
        payload = spec.payload
        handle = self._prewarmer.deliver(
            prepared, spec, container_name(spec),
            (lambda: _binary_tar(payload.read())) if payload is not None else None)
        self._mine[handle] = prepared.container
        return handle

    # -- runs ---------------------------------------------------------------------
    def start(self, spec: RunSpec) -> str:
        try:
            return self._start_prewarmed(spec)
        except NotPrewarmed as exc:
            LOG.debug("execution %s starts a new container: %s", spec.execution_id, exc)
        container = self._create_or_find(spec)
        if _started(container) and undelivered(container):
            # a prewarmed container whose worker died handing it the message: the shim
            # ran nothing, so the run starts afresh
            _remove_quietly(container)
            container = self._create_or_find(spec)
        if _started(container):
            return str(container.id)  # started before, by a worker that died: adopt it
        try:
            if spec.payload is not None:
                container.put_archive("/", _binary_tar(spec.payload.read()))
            container.start()
        except ENGINE_ERRORS as exc:
            if not _did_start(container):  # a timed-out start may still have started it
                failed = self._start_failed("could not start the container", exc)
                if not failed.transient or _MID_RESTART.search(str(exc)):
                    # refused for good, or a task the engine lost track of when it was
                    # killed between creating and starting it: a retry starts afresh
                    _remove_quietly(container)
                raise failed from exc
        self._mine[str(container.id)] = container  # saves an inspect in wait()
        return str(container.id)

    def _create_or_find(self, spec: RunSpec) -> Any:
        name = container_name(spec)
        try:
            return self.client.containers.create(name=name, **self._create_args(spec))
        except docker.errors.ImageNotFound as exc:
            raise StartFailed(f"could not create the container: {exc}", transient=False,
                              image_missing=True) from exc
        except docker.errors.APIError as exc:
            if exc.status_code != 409:
                raise self._start_failed("could not create the container", exc) from exc
        except ENGINE_ERRORS as exc:
            raise StartFailed(f"could not create the container: {exc}") from exc
        try:
            return self.client.containers.get(name)  # 409: it exists already
        except ENGINE_ERRORS as exc:
            raise StartFailed(f"could not find container {name}: {exc}") from exc

    def _start_failed(self, doing: str, exc: Exception) -> StartFailed:
        """Engine down: transient. A 4xx: final. A 5xx: transient, but marked when the
        engine answers a ping, since then it may be this very run it cannot take (a NUL
        in the environment, a request over its size limit) as well as a passing fault
        of its own (containerd restarting)."""
        message = f"{doing}: {exc}"
        if _engine_down(exc) or _MID_RESTART.search(str(exc)):
            return StartFailed(message, transient=True)
        if not _server_error(exc):
            return StartFailed(message, transient=False)
        try:
            answered = bool(self.client.ping())
        except ENGINE_ERRORS:
            answered = False
        return StartFailed(message, transient=True, engine_answered=answered)

    def wait(self, handle: str, on_log: Callable[[bytes], None],
             deadline: float) -> RunResult:
        """Follow the run to its end, riding out an engine that stops answering."""
        resumable = _Resumable(on_log)
        pause = threading.Event()
        delay = 0.5
        while True:
            try:
                return self._wait_once(handle, resumable, deadline)
            except _Gone:
                return _gone(f"container {handle[:12]} no longer exists on the engine")
            except ENGINE_ERRORS as exc:
                if time.time() > deadline + self.settings.outage_patience_s:
                    raise BackendUnavailable(f"docker engine unavailable: {exc}") from exc
                LOG.warning("engine did not answer while waiting on %s: %s", handle[:12], exc)
            resumable.restart()
            pause.wait(delay)
            delay = min(delay * 2, 5.0)

    def _wait_once(self, handle: str, on_log: _Resumable, deadline: float) -> RunResult:
        container = self._mine.pop(handle, None)
        container_id, delivered = split_handle(handle)
        try:
            container = container or self.client.containers.get(container_id)
        except docker.errors.NotFound as exc:
            raise _Gone() from exc
        stats = StatsFollower()
        logs = _LogFollower(container, on_log)
        threading.Thread(target=_follow_stats, args=(container, stats), daemon=True).start()
        notes: list[str] = []
        killed = None
        try:
            container.wait(timeout=max(0.01, deadline - time.time()))
        except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
            if time.time() < deadline - 0.05:
                raise  # the engine, not the deadline
            killed = f"killed: exceeded the maximum run time of {_limit(container)} s"
            container.kill()
            container.wait(timeout=30)
        except docker.errors.NotFound as exc:
            raise _Gone() from exc
        reloaded = self._side.submit(container.reload)  # beside the rest of the output
        logs.finish()
        try:
            reloaded.result()
        except docker.errors.NotFound as exc:
            raise _Gone() from exc
        result = _result(dict(container.attrs.get("State") or {}), stats, notes, delivered)
        result.killed_reason = killed
        failure = shim.start_failure(result.exit_code, logs.output) if delivered else None
        if failure:  # the shim could not exec the image's command: no run, as plain
            return RunResult(exit_code=None, start_time=None, finish_time=result.finish_time,
                             raw=result.raw, notes=[failure])
        return result

    def stop(self, handle: str, remove: bool = False) -> None:
        """Kill the run (and remove what is left of it); a run already gone is fine."""
        try:
            container = self.client.containers.get(split_handle(handle)[0])
            if remove:
                container.remove(force=True)
            elif container.status == "running":
                container.kill()
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: not running any more
                raise BackendUnavailable(f"docker engine: {exc}") from exc
        except ENGINE_ERRORS as exc:
            raise BackendUnavailable(f"docker engine unavailable: {exc}") from exc

    def _create_args(self, spec: RunSpec) -> dict[str, Any]:
        args: dict[str, Any] = {
            "image": spec.image,
            "environment": spec.env,
            "detach": True,
            "network_mode": spec.network,
            "labels": {LABEL_EXECUTION: spec.execution_id, LABEL_ACTOR: spec.actor_id,
                       LABEL_WORKER: spec.worker_id, LABEL_LIMIT: f"{spec.max_run_time_s:g}",
                       **spec.labels},
            "security_opt": ["no-new-privileges"],
            # The engine's own copy of the output is bounded too (the platform keeps at
            # most max_log_bytes), so an actor cannot fill the disk by printing.
            "log_config": {"type": "json-file", "config": {
                "max-size": str(max(2 * self.settings.max_log_bytes, 1 << 20)),
                "max-file": "1"}},
        }
        if spec.memory_bytes:
            args["mem_limit"] = spec.memory_bytes
            args["memswap_limit"] = spec.memory_bytes  # no swap beyond the cap
        if spec.cpus:
            args["nano_cpus"] = int(spec.cpus * 1e9)
        if spec.pids_limit:
            args["pids_limit"] = spec.pids_limit
        if spec.user:
            args["user"] = spec.user
        if spec.confined:
            args.update(cap_drop=["ALL"], cap_add=KEPT_CAPABILITIES)
        volumes = {m.host_path: {"bind": m.container_path, "mode": "ro" if m.read_only else "rw"}
                   for m in spec.mounts}
        if spec.results_socket:
            volumes[spec.results_socket] = {"bind": RESULTS_PATH, "mode": "rw"}
        if spec.engine_access:
            volumes.update(self._engine_volume(args))
        if volumes:
            args["volumes"] = volumes
        return args

    def _engine_volume(self, args: dict[str, Any]) -> dict[str, dict[str, str]]:
        """The socket of the engine this runner uses, at Docker's default path inside,
        with its group so a non-root user may use it; an engine over TCP is named in
        DOCKER_HOST instead."""
        socket = engine_socket(self.settings)
        if socket is None:
            args["environment"] = {**args["environment"],
                                   "DOCKER_HOST": self.settings.docker_host}
            return {}
        try:
            args["group_add"] = [str(os.stat(socket).st_gid)]
        except OSError as exc:
            raise StartFailed(f"engine socket {socket}: {exc}", transient=False) from exc
        return {socket: {"bind": DOCKER_SOCKET, "mode": "rw"}}


class _Gone(Exception):
    """The container does not exist (any more)."""


class _Resumable:
    """Passes log bytes on once: after an interrupted stream, the replay from the
    container's first byte is skipped up to what was already delivered."""

    def __init__(self, on_log: Callable[[bytes], None]) -> None:
        self.on_log = on_log
        self.delivered = 0
        self.seen = 0

    def restart(self) -> None:
        self.seen = 0

    def __call__(self, chunk: bytes) -> None:
        skip = max(0, self.delivered - self.seen)
        self.seen += len(chunk)
        if skip < len(chunk):
            self.on_log(chunk[skip:])
            self.delivered += len(chunk) - skip


# What an engine answers for a container whose task it created but never started,
# because it was killed in between: the container never ran, and can be started only
# once it is removed and created again.
_MID_RESTART = re.compile(r"task .* already exists|is already in progress", re.IGNORECASE)


def _engine_down(exc: Exception) -> bool:
    """The engine did not answer (an APIError, even a 500, is an answer)."""
    return not isinstance(exc, docker.errors.APIError)


def _server_error(exc: Exception) -> bool:
    status = getattr(exc, "status_code", None)
    return status is None or status >= 500


def _limit(container: Any) -> str:
    return str((container.labels or {}).get(LABEL_LIMIT, "?"))


def _started(container: Any) -> bool:
    state = container.attrs.get("State") or {}
    return parse_docker_time(state.get("StartedAt")) is not None


class _LogFollower:
    """Passes a run's output on live, from a follow stream read in a thread. Once the
    container has exited, the engine holds all of its output, so ``finish`` reads the
    rest in one request instead of waiting for the stream to notice the end (a follow
    stream closes some milliseconds after its container stops)."""

    def __init__(self, container: Any, on_log: _Resumable) -> None:
        self.container, self.on_log = container, on_log
        self.lock = threading.Lock()
        self.finished = False
        self.stream: Any = None
        self.output = b""  # all of it, once finished
        threading.Thread(target=self._follow, daemon=True).start()

    def _follow(self) -> None:
        try:
            self.stream = self.container.logs(stream=True, follow=True, stdout=True,
                                              stderr=True)
            for chunk in self.stream:
                with self.lock:
                    if self.finished:
                        return
                    self.on_log(chunk)
        except (*ENGINE_ERRORS, OSError, ValueError, AttributeError) as exc:
            LOG.info("log stream of %s ended: %s", self.container.id, exc)

    def finish(self) -> None:
        """The container has exited: pass on what the stream has not, in order (an
        engine error here leaves the caller to try again with a new follower)."""
        with self.lock:
            self.finished = True
        if self.stream is not None:
            with contextlib.suppress(*ENGINE_ERRORS, OSError, AttributeError):
                self.stream.close()
        everything = self.container.logs(stdout=True, stderr=True, stream=False)
        self.output = everything
        self.on_log.restart()
        self.on_log(everything)


def _follow_stats(container: Any, stats: StatsFollower) -> None:
    try:
        for sample in container.stats(stream=True, decode=True):
            stats.feed(sample)
    except (docker.errors.DockerException, requests.RequestException, ValueError) as exc:
        LOG.debug("stats stream of %s ended: %s", container.id, exc)


def _idle_run(container: Any, grace_s: float) -> IdleRun | None:
    """The run this container is, named ``container_name`` (a delivered prewarmed one
    too: it took that name, though not the execution's label), if it has been idle for
    longer than ``grace_s``: since it ended, or since it was made for one never
    started. Undelivered prewarmed containers are ``prune_prepared``'s."""
    if container.name.startswith(NAME_PREFIX) or not container.name.startswith("abaco-"):
        return None
    tenant, _, eid = container.name[len("abaco-"):].rpartition("-")
    tenant, _, actor_id = tenant.rpartition("-")
    labels = container.labels or {}
    if not tenant or actor_id != labels.get(LABEL_ACTOR) or \
            labels.get(LABEL_EXECUTION, eid) != eid:
        return None
    state = container.attrs.get("State") or {}
    since = parse_docker_time(state.get("FinishedAt")) if container.status == "exited" \
        else parse_docker_time(container.attrs.get("Created"))
    if since is None or (datetime.now(UTC) - since).total_seconds() <= grace_s:
        return None
    return IdleRun(tenant, actor_id, eid, container.id)


def _remove_quietly(container: Any) -> None:
    try:
        container.remove(force=True)
    except (docker.errors.DockerException, requests.RequestException):
        LOG.warning("could not remove container %s", container.id)


def _did_start(container: Any) -> bool:
    try:
        container.reload()
    except ENGINE_ERRORS:
        return False
    return _started(container)


def _binary_tar(data: bytes) -> bytes:
    """A tar holding ``/_abaco_binary_data``, readable like Abaco's FIFO."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("_abaco_binary_data")
        info.size = len(data)
        info.mode = 0o444
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _result(state: dict[str, Any], stats: StatsFollower, notes: list[str],
            delivered: float | None = None) -> RunResult:
    """A prewarmed run started when its message was delivered, not with its container."""
    started = parse_docker_time(state.get("StartedAt"))
    if started and delivered:
        started = max(started, datetime.fromtimestamp(delivered, UTC))
    finished = parse_docker_time(state.get("FinishedAt"))
    if started and finished and finished < started:
        finished = started  # a run shorter than the engine's clock steps
    runtime = (finished - started).total_seconds() if started and finished else 0.0
    return RunResult(
        exit_code=state.get("ExitCode"),
        start_time=to_iso(started) if started else None,
        finish_time=to_iso(finished) if finished else now_iso(),
        runtime=max(runtime, 0.0),
        oom_killed=bool(state.get("OOMKilled")),
        cpu_ns=stats.cpu,
        io_bytes=stats.io,
        mem_peak_bytes=stats.mem_peak,
        raw=state,
        notes=notes,
    )


def _gone(reason: str) -> RunResult:
    return RunResult(exit_code=None, start_time=None, finish_time=now_iso(), gone=True,
                     notes=[reason])
