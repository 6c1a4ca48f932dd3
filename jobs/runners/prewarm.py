"""Prewarmed containers for the Docker runner: the next run's container, started early.

A worker asks for its next container as soon as a run ends (``prepare``, done in a
thread); the container is created with the shim as its entrypoint (``shim.py``),
stdin held open by an attach made before its start, and started. When the message
comes, ``start`` finds it (``take``) if it was made for the same run shape (image,
limits, mounts, user, results socket: all fixed per worker), renames it to the
execution's container name (the engine refuses a second container of the same
execution, as for a plain run), copies in a binary message, and writes the
environment to its stdin. The handle records when the message was delivered, so
start time and runtime are measured from then, by any worker that waits on it.

Every execution still gets a container of its own, made for it alone; one that was
never delivered is removed when its worker leaves, when the actor changed (the shape
differs), or, left by a worker that died (its attach closed, so the shim exited),
by the next worker of the actor.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests

from jobs.runners import shim
from jobs.runners.base import LABEL_PLATFORM, RunSpec, StartFailed
from jobs.timeutil import parse_docker_time

LOG = logging.getLogger(__name__)
LABEL_PREWARM = "abaco.prewarm"
NAME_PREFIX = "abaco-prewarm-"
ENGINE_ERRORS = (docker.errors.DockerException, requests.RequestException, OSError)


def shape_of(spec: RunSpec) -> RunSpec:
    """What a container is made with and cannot change after: the spec less what each
    execution brings (its id, environment and binary message)."""
    return dataclasses.replace(spec, execution_id="", env={}, payload=None)


def split_handle(handle: str) -> tuple[str, float | None]:
    """A prewarmed run's handle is ``<container id>@<epoch seconds of delivery>``."""
    container_id, _, delivered = handle.partition("@")
    return container_id, float(delivered) if delivered else None


@dataclasses.dataclass
class Prepared:
    """One container waiting for its message."""

    shape: RunSpec
    ready: threading.Event = dataclasses.field(default_factory=threading.Event)
    container: Any = None
    stdin: Any = None           # the attach socket; closing it is the shim's EOF
    image_env: dict[str, str] = dataclasses.field(default_factory=dict)
    dropped: bool = False       # discarded while being made: its maker removes it


class NotPrewarmed(Exception):
    """This run starts the plain way (no container ready for it, or not usable)."""


class Prewarmer:
    """The prepared containers of one process, one per worker."""

    def __init__(self, client: Callable[[], Any], create_args: Callable[[RunSpec], dict[str, Any]],
                 shim_dir: Path, timeout_s: float) -> None:
        self.client = client
        self.create_args = create_args
        self.shim_dir = shim_dir
        self.timeout_s = timeout_s
        self.lock = threading.Lock()
        self.prepared: dict[str, Prepared] = {}
        self.pruned: set[str] = set()
        self.configs: dict[str, dict[str, Any]] = {}
        self.disabled = ""

    # -- ahead of the message ---------------------------------------------------------
    def prepare(self, spec: RunSpec) -> None:
        """Start making the worker's next container (any older one is discarded)."""
        if self.disabled:
            return
        prepared = Prepared(shape_of(spec))
        with self.lock:
            old = self.prepared.pop(spec.worker_id, None)
            self.prepared[spec.worker_id] = prepared
        if old is not None:
            self._drop(old)
        threading.Thread(target=self._make, args=(prepared,), daemon=True,
                         name=f"prewarm-{spec.worker_id}").start()

    def _make(self, prepared: Prepared) -> None:
        try:
            self._prune(prepared.shape)
            self._create_and_start(prepared)
        except (*ENGINE_ERRORS, NotPrewarmed) as exc:
            LOG.warning("no prewarmed container for worker %s: %s", prepared.shape.worker_id, exc)
            self._disable_if_refused(exc)
            self._remove(prepared)
            prepared.container = None
        finally:
            prepared.ready.set()
        if prepared.dropped:
            self._remove(prepared)

    def _create_and_start(self, prepared: Prepared) -> None:
        spec = prepared.shape
        config = self._image_config(spec.image)
        command = list(config.get("Entrypoint") or []) + list(config.get("Cmd") or [])
        if not command:
            raise NotPrewarmed(f"image {spec.image} names no command")
        prepared.image_env = dict(item.partition("=")[::2] for item in config.get("Env") or [])
        args = self.create_args(spec)
        args["labels"] = {key: value for key, value in args["labels"].items()
                          if value != ""} | {LABEL_PREWARM: "1"}
        args.update(entrypoint=shim.ENTRYPOINT, command=command, stdin_open=True, detach=False,
                    name=f"{NAME_PREFIX}{spec.tenant}-{spec.actor_id}-{uuid.uuid4().hex[:12]}")
        args.setdefault("volumes", {})[str(self.shim_dir)] = {"bind": shim.MOUNT, "mode": "ro"}
        prepared.container = self.client().containers.create(**args)
        prepared.stdin = prepared.container.attach_socket(params={"stdin": 1, "stream": 1})
        prepared.container.start()

    def _image_config(self, image: str) -> dict[str, Any]:
        """The image's entrypoint, command and environment, read once per process (a
        worker serves one revision's image; a new revision comes with new workers)."""
        config = self.configs.get(image)
        if config is None:
            config = self.client().images.get(image).attrs.get("Config") or {}
            self.configs[image] = config
        return config

    def _disable_if_refused(self, exc: Exception) -> None:
        """A start the engine refuses (the shim's directory is not where the engine
        looks, as when the worker runs in a container of its own) would be refused
        every time: stop trying, and say so once."""
        status = getattr(exc, "status_code", None)
        if status is not None and 400 <= status < 600 and "abaco-shim" in str(exc):
            self.disabled = str(exc)
            LOG.warning("prewarmed containers are off in this process: %s", exc)

    def _prune(self, shape: RunSpec) -> None:
        """Once per actor in this process, before its first prepared container."""
        if shape.actor_id in self.pruned:
            return
        self.pruned.add(shape.actor_id)
        prune_abandoned(self.client(), self.timeout_s, shape.labels.get(LABEL_PLATFORM),
                        shape.actor_id)

    # -- on the message ---------------------------------------------------------------
    def take(self, spec: RunSpec) -> Prepared:
        """The container prepared for this spec's worker and shape, ready; else raise
        NotPrewarmed (a container of another shape is discarded)."""
        with self.lock:
            prepared = self.prepared.pop(spec.worker_id, None)
        if prepared is None:
            raise NotPrewarmed("none prepared")
        if prepared.shape != shape_of(spec):
            self._drop(prepared)
            raise NotPrewarmed("prepared for another shape")
        if not prepared.ready.wait(self.timeout_s) or prepared.container is None:
            self._drop(prepared)
            raise NotPrewarmed("not ready")
        return prepared

    def deliver(self, prepared: Prepared, spec: RunSpec, name: str,
                payload_tar: Callable[[], bytes] | None) -> str:
        """Make the prepared container this execution's run; the run's handle.
        NotPrewarmed: nothing was delivered and the container is gone (or, on a
        name conflict, a run of this execution exists already)."""
        script = shim.env_script(spec.env, prepared.image_env)
        if script is None:
            self._drop(prepared)
            raise NotPrewarmed("an environment name the shell cannot export")
        container = prepared.container
        try:
            container.rename(name)  # the engine's guard against a second run
        except ENGINE_ERRORS as exc:
            self._drop(prepared)
            raise NotPrewarmed(f"rename refused: {exc}") from exc
        try:
            if payload_tar is not None:
                container.put_archive("/", payload_tar())
        except ENGINE_ERRORS as exc:
            self._remove(prepared)  # renamed but told nothing: the name is free again
            raise NotPrewarmed(f"binary message not copied: {exc}") from exc
        try:
            raw = _raw_socket(prepared.stdin)
            raw.sendall(script)
            raw.shutdown(socket.SHUT_WR)
        except OSError as exc:
            # Cut short, the shim runs nothing; whole, the run is on. Either way the
            # container keeps the execution's name, so a retry waits on it.
            raise StartFailed(f"the environment was not delivered: {exc}") from exc
        finally:
            _close_quietly(prepared.stdin)
        return f"{container.id}@{time.time():.6f}"

    # -- away -------------------------------------------------------------------------
    def discard(self, worker_id: str) -> None:
        """The worker leaves: its prepared container goes, now."""
        with self.lock:
            prepared = self.prepared.pop(worker_id, None)
        if prepared is not None:
            prepared.ready.wait(self.timeout_s)
            self._drop(prepared, wait=True)

    def _drop(self, prepared: Prepared, wait: bool = False) -> None:
        """Remove it (off the caller's path unless ``wait``), or have its maker do so."""
        prepared.dropped = True
        if not prepared.ready.is_set():
            return  # _make removes it when done
        if wait:
            self._remove(prepared)
        else:
            threading.Thread(target=self._remove, args=(prepared,)).start()

    def _remove(self, prepared: Prepared) -> None:
        _close_quietly(prepared.stdin)
        if prepared.container is not None:
            _remove_quietly(prepared.container)


def prune_abandoned(client: Any, grace_s: float, platform: str | None,
                    actor_id: str | None = None) -> int:
    """Remove prewarmed containers of ``platform`` (of one actor, or all) that exited
    without a message (their worker died, closing their stdin), or were created and
    never started (their worker died in between) longer than ``grace_s`` ago; how
    many. Another platform sharing the engine has its own sweep: its containers are
    not this one's to judge. ``platform`` None (a spec with no platform label) prunes
    by the actor alone."""
    labels = [LABEL_PREWARM] + ([f"{LABEL_PLATFORM}={platform}"] if platform else []) \
        + ([f"abaco.actor={actor_id}"] if actor_id else [])
    leftovers = client.containers.list(all=True, filters={
        "label": labels, "status": ["exited", "created"]})
    removed = 0
    for container in leftovers:
        if container.name.startswith(NAME_PREFIX) and _abandoned(container, grace_s):
            _remove_quietly(container)
            removed += 1
    return removed


def undelivered(container: Any) -> bool:
    """A prewarmed container that ended in its shim, without running its actor."""
    state = container.attrs.get("State") or {}
    if LABEL_PREWARM not in (container.labels or {}) or state.get("Status") != "exited":
        return False
    try:
        output = container.logs(stdout=True, stderr=True)
    except ENGINE_ERRORS:
        return False
    return shim.never_ran(state.get("ExitCode"), output)


def _abandoned(container: Any, grace_s: float) -> bool:
    """Exited (never delivered: a delivered one has its execution's name), or only
    created, longer ago than any worker takes between creating and starting one. The
    state is the one read just now, not the listing's: a container listed as created
    may have been started since."""
    if container.status == "exited":
        return True
    if container.status != "created":
        return False
    created = parse_docker_time(container.attrs.get("Created"))
    return created is not None and (datetime.now(UTC) - created).total_seconds() > grace_s


def _raw_socket(attached: Any) -> socket.socket:
    """docker-py returns the hijacked connection wrapped; writes go to the socket."""
    return getattr(attached, "_sock", attached)


def _close_quietly(attached: Any) -> None:
    """End the attach connection for certain, whatever else still holds the socket: a
    forced remove of a container whose attach is open can hang the Docker engine (seen
    once with 20.10: ContainerRm waiting on an attach's streams)."""
    if attached is None:
        return
    raw = _raw_socket(attached)
    with contextlib.suppress(OSError, AttributeError):
        raw.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError, AttributeError):
        raw.close()
        attached.close()


def _remove_quietly(container: Any) -> None:
    try:
        container.remove(force=True)
    except ENGINE_ERRORS as exc:
        LOG.info("prewarmed container %s not removed: %s", container.id, exc)
