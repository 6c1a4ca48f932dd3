"""The Runner interface: one execution, in platform terms, on any engine.

    start(spec) -> handle        idempotent per execution: a second call for the same
                                 execution returns the handle of the run that exists
                                 and never starts a second one
    wait(handle, on_log, deadline) -> RunResult
                                 follows the run (logs from its beginning) until it
                                 ends, killing it once ``deadline`` (epoch seconds)
                                 passes; any process may wait on any handle, so a run
                                 outlives the worker that started it
    stop(handle, remove)         kill it (cancel, drain); ``remove`` also deletes
                                 what is left of it on the engine
    check_image(image)           present, or fetched now
    prepare(spec)                make the worker's next run ready ahead of its message
                                 (``spec`` has no execution yet); a later ``start``
                                 of the same shape uses it. Optional: a no-op is right
    discard_prepared(worker_id)  the worker leaves: remove what ``prepare`` made
    prune_prepared(platform)     remove what dead workers of ``platform`` left of
                                 their ``prepare`` (the scheduler's sweep); how many
    idle_runs(platform, grace_s) runs of ``platform`` (the ``LABEL_PLATFORM`` of
                                 their spec) on the engine and not running, made and
                                 never started or ended, for longer than ``grace_s``:
                                 the scheduler's sweep removes those whose execution
                                 is over or gone. An engine that cleans up after its
                                 runs itself answers none

A runner never touches Redis or S3: the worker records what it returns. The spec
carries platform units (bytes, CPUs, pids); the result is normalised, with the
engine's own final state kept opaque in ``raw``. Handles are strings, stored in
the execution record when it goes RUNNING.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from jobs.errors import AbacoError


class Payload(Protocol):
    """A binary message by reference: read only by the runner that delivers it, so a
    spec never carries (or logs) up to ``max_body_bytes`` of data."""

    def read(self) -> bytes: ...


@dataclass(frozen=True)
class BytesPayload:
    """A payload already in memory (tests, small messages)."""

    data: bytes

    def read(self) -> bytes:
        return self.data


@dataclass(frozen=True)
class Mount:
    """A host path inside the run (privileged actors, allow-listed host paths only)."""

    host_path: str
    container_path: str
    read_only: bool = True


@dataclass(frozen=True)
class RunSpec:
    """One execution, as any runner needs it."""

    execution_id: str
    actor_id: str
    tenant: str
    worker_id: str
    image: str
    env: dict[str, str]
    network: str                      # "none", "host" or "bridge"
    max_run_time_s: float
    memory_bytes: int | None = None
    cpus: float | None = None
    pids_limit: int | None = None
    engine_access: bool = False       # the engine's socket inside (privileged actors)
    user: str | None = None           # "uid:gid"; None: the image's own user
    confined: bool = True             # only the capabilities a plain actor needs
    mounts: tuple[Mount, ...] = ()
    results_socket: str | None = None  # host path of the run's results socket
    payload: Payload | None = None    # a binary message, delivered as a file
    labels: dict[str, str] = field(default_factory=dict)
    queue: str = "default"            # where it runs (a Nomad node pool; locally: here)


@dataclass
class RunResult:
    """What came out of one run. Units: seconds, CPU nanoseconds, bytes.

    ``gone`` says the run no longer exists on the engine (removed, or the engine lost
    its state): nothing true can be said of its outcome.
    """

    exit_code: int | None
    start_time: str | None
    finish_time: str
    runtime: float = 0.0
    oom_killed: bool = False
    killed_reason: str | None = None
    cpu_ns: int = 0
    mem_peak_bytes: int = 0
    io_bytes: int = 0
    gone: bool = False
    raw: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ImageCheck:
    """The verdict on one image. ``transient``: the engine could not be asked; try later."""

    ok: bool
    reason: str = ""
    transient: bool = False


class StartFailed(AbacoError):
    """The run could not be started. ``transient`` failures (engine down, timeouts) are
    worth retrying; the others (bad image, bad spec) are not. ``engine_answered``: the
    engine was up and still failed this run (a 5xx): worth a few more tries, not
    forever, since it may be this run itself that it cannot take. ``image_missing``: the
    image went away after its check; the scheduler should check it again."""

    def __init__(self, message: str, transient: bool = True,
                 engine_answered: bool = False, image_missing: bool = False) -> None:
        super().__init__(message, transient=transient)
        self.transient = transient
        self.engine_answered = engine_answered
        self.image_missing = image_missing


LABEL_PLATFORM = "abaco.platform"


@dataclass(frozen=True)
class IdleRun:
    """A run left on the engine, not running: whose execution it is, and its handle."""

    tenant: str
    actor_id: str
    execution_id: str
    handle: str


class Runner(Protocol):
    """See the module docstring."""

    def start(self, spec: RunSpec) -> str: ...

    def wait(self, handle: str, on_log: Callable[[bytes], None],
             deadline: float) -> RunResult: ...

    def stop(self, handle: str, remove: bool = False) -> None: ...

    def check_image(self, image: str) -> ImageCheck: ...

    def prepare(self, spec: RunSpec) -> None: ...

    def discard_prepared(self, worker_id: str) -> None: ...

    def prune_prepared(self, platform: str) -> int: ...

    def idle_runs(self, platform: str, grace_s: float) -> list[IdleRun]: ...
