"""The Runner interface: run one execution, report when it starts and what it printed.

A runner is given everything it needs in a ``RunSpec`` and returns a
``RunResult``; it never touches Redis or S3, so the same worker loop drives a
local Docker engine or a Nomad cluster.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class RunSpec:
    """One execution, as the runner needs it."""

    execution_id: str
    actor_id: str
    tenant: str
    worker_id: str
    image: str
    env: dict[str, str]
    network: str
    max_run_time_s: float
    mem_limit: str | None = None
    nano_cpus: int | None = None
    pids_limit: int | None = None
    privileged: bool = False
    user: str | None = None
    binary: bytes | None = None


@dataclass
class RunResult:
    """What came out of one execution. Units: seconds, CPU nanoseconds, bytes."""

    exit_code: int | None
    final_state: dict[str, Any]
    start_time: str | None
    finish_time: str
    runtime: float
    cpu: int = 0
    io: int = 0
    mem_peak: int = 0
    error: str | None = None
    started: bool = False
    notes: list[str] = field(default_factory=list)


class Runner(Protocol):
    """Runs executions; ``on_start`` fires once the container runs, ``on_log`` per chunk."""

    def run(self, spec: RunSpec, on_start: Callable[[str], None],
            on_log: Callable[[bytes], None]) -> RunResult: ...

    def kill_execution(self, execution_id: str) -> bool: ...

    def stop_execution(self, execution_id: str) -> bool: ...

    def image_available(self, image: str) -> tuple[bool, str]: ...
