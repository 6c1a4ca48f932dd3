"""FakeRunner: a scriptable, in-memory engine for driving the real worker and scheduler.

Shipped with the code (not the tests) so that races and crashes can be replayed
deterministically: each run follows a ``FakeRun`` plan (exit code, logs, how
long, OOM, a start failure), and a plan may hold its run on a ``gate`` event until
the test releases it. Runs live in the runner object, not in a worker, so a run
outlives the worker that started it exactly like a container does; ``starts``
counts real starts per execution, the number the engine's own events would give.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from jobs.runners.base import IdleRun, ImageCheck, RunResult, RunSpec, StartFailed
from jobs.timeutil import now_iso


@dataclass
class FakeRun:
    """What one run will do."""

    exit_code: int = 0
    logs: bytes = b""
    duration_s: float = 0.0
    oom_killed: bool = False
    start_error: str | None = None        # StartFailed with this message
    start_error_transient: bool = True
    start_error_answered: bool = False     # the engine was up and refused this run
    start_error_image_missing: bool = False
    gate: threading.Event | None = None    # the run ends only once this is set


@dataclass
class _Run:
    handle: str
    spec: RunSpec
    plan: FakeRun
    started: str
    done: threading.Event = field(default_factory=threading.Event)
    exit_code: int | None = None
    finished: str | None = None
    killed: bool = False


class FakeRunner:
    """See the module docstring. ``plan`` maps a spec to its ``FakeRun``."""

    def __init__(self, plan: Callable[[RunSpec], FakeRun] | None = None,
                 images: set[str] | None = None) -> None:
        self.plan = plan or (lambda spec: FakeRun(logs=f"ran {spec.execution_id}\n".encode()))
        self.images = images
        self.engine_down = False
        self.runs: dict[str, _Run] = {}
        self.starts: Counter[str] = Counter()
        self.start_attempts: Counter[str] = Counter()
        self.history: list[RunSpec] = []   # every spec that really started, in order
        self.before_start: Callable[[RunSpec], None] | None = None
        self._lock = threading.Lock()

    # -- the interface ----------------------------------------------------------
    def check_image(self, image: str) -> ImageCheck:
        if self.engine_down:
            return ImageCheck(False, "fake engine unavailable", transient=True)
        if self.images is not None and image not in self.images:
            return ImageCheck(False, f"image {image} is not present")
        return ImageCheck(True)

    def prepare(self, spec: RunSpec) -> None:
        """Nothing to make ahead: a fake run starts at once."""

    def discard_prepared(self, worker_id: str) -> None:
        """Nothing was prepared."""

    def prune_prepared(self, platform: str) -> int:
        """Nothing is ever prepared."""
        return 0

    def idle_runs(self, platform: str, grace_s: float) -> list[IdleRun]:
        """Its runs live in memory and go with it."""
        return []

    def start(self, spec: RunSpec) -> str:
        handle = f"fake-{spec.tenant}-{spec.execution_id}"
        if self.before_start is not None:
            self.before_start(spec)
        with self._lock:
            self.start_attempts[spec.execution_id] += 1
            if handle in self.runs:
                return handle  # started before: the engine refuses a second one
            if self.engine_down:
                raise StartFailed("fake engine unavailable", transient=True)
            plan = self.plan(spec)
            if plan.start_error:
                raise StartFailed(plan.start_error, transient=plan.start_error_transient,
                                  engine_answered=plan.start_error_answered,
                                  image_missing=plan.start_error_image_missing)
            run = _Run(handle, spec, plan, now_iso())
            self.runs[handle] = run
            self.starts[spec.execution_id] += 1
            self.history.append(spec)
        threading.Thread(target=self._play, args=(run,), daemon=True).start()
        return handle

    def wait(self, handle: str, on_log: Callable[[bytes], None],
             deadline: float) -> RunResult:
        run = self.runs.get(handle)
        if run is None:
            return _gone(handle)
        if run.plan.logs:
            on_log(run.plan.logs)
        killed_reason = None
        if not run.done.wait(max(0.0, deadline - time.time())):
            killed_reason = f"killed: exceeded the maximum run time of " \
                            f"{run.spec.max_run_time_s:g} s"
            self._end(run, 137, killed=True)
        if self.runs.get(handle) is not run:
            return _gone(handle)
        return RunResult(exit_code=run.exit_code, start_time=run.started,
                         finish_time=run.finished or now_iso(), runtime=run.plan.duration_s,
                         oom_killed=run.plan.oom_killed, killed_reason=killed_reason,
                         raw={"Status": "exited", "ExitCode": run.exit_code,
                              "OOMKilled": run.plan.oom_killed, "StartedAt": run.started,
                              "FinishedAt": run.finished})

    def stop(self, handle: str, remove: bool = False) -> None:
        run = self.runs.get(handle)
        if run is None:
            return
        self._end(run, 137, killed=True)
        if remove:
            with self._lock:
                self.runs.pop(handle, None)

    # -- for tests ----------------------------------------------------------------
    def lose_everything(self) -> None:
        """The engine forgets every run (its state destroyed)."""
        with self._lock:
            runs = list(self.runs.values())
            self.runs.clear()
        for run in runs:
            run.done.set()

    def running(self) -> list[str]:
        return [r.spec.execution_id for r in self.runs.values() if not r.done.is_set()]

    def _play(self, run: _Run) -> None:
        if run.plan.gate is not None:
            run.plan.gate.wait(600)
        elif run.plan.duration_s:
            run.done.wait(run.plan.duration_s)
        self._end(run, run.plan.exit_code)

    def _end(self, run: _Run, exit_code: int, killed: bool = False) -> None:
        with self._lock:
            if run.done.is_set():
                return
            run.exit_code, run.killed, run.finished = exit_code, killed, now_iso()
            run.done.set()


def _gone(handle: str) -> RunResult:
    return RunResult(exit_code=None, start_time=None, finish_time=now_iso(), gone=True,
                     notes=[f"run {handle} no longer exists on the engine"])
