"""What the Nomad runner costs per execution, against the test double (real HTTP, each
allocation a real container), next to the Docker runner measured in the same run.

Prints the Nomad API requests per execution (log streams counted apart: they are one
long request each: the relay's stdout and the actor's stdout and stderr) and the median
wall time from start to result for both runners;
the difference is what Nomad's API round trips add here (a real cluster adds its
scheduling round on top).

    .venv/bin/python bench/nomad_overhead.py --runs 5
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace
from typing import Any

from common import NOOP, ROOT, build_all, progress  # type: ignore[import-not-found]

from jobs.runners.base import RunSpec
from jobs.runners.docker import DockerRunner
from jobs.runners.nomad import NomadRunner
from jobs.settings import load_settings
from tests.nomad_double import NomadDouble, on_double


def build_relay() -> None:
    """The relay image the Nomad runner's sidecar runs (built once, like the tests')."""
    import sys

    sys.path.insert(0, str(ROOT / "images"))
    from build import build_relay as build  # type: ignore[import-not-found]

    build()


def _timed(runner: Any, spec: RunSpec) -> float:
    begun = time.perf_counter()
    handle = runner.start(spec)
    result = runner.wait(handle, lambda _c: None, time.time() + 120)
    elapsed = time.perf_counter() - begun
    assert result.exit_code == 0, result
    runner.stop(handle, remove=True)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    build_all()
    build_relay()
    settings = load_settings()
    base = RunSpec(execution_id="", actor_id="bench", tenant="T", worker_id="w",
                   image=NOOP, env={"MSG": "x"}, network="none", max_run_time_s=60)
    docker_times, nomad_times, requests_per_run = [], [], []
    with NomadDouble() as double:
        nomad = NomadRunner(on_double(settings, double))
        docker = DockerRunner(settings)
        for i in range(args.runs):
            progress("runs", i, args.runs)
            docker_times.append(_timed(docker, replace(base, execution_id=f"d{i}{time.time_ns()}")))
            double.state.requests.clear()
            nomad_times.append(_timed(nomad, replace(base, execution_id=f"n{i}{time.time_ns()}")))
            requests_per_run.append(sum(1 for r in double.state.requests
                                        if not r.startswith("GET /v1/client/fs/logs")))
        progress("runs", args.runs, args.runs)
    docker_ms = statistics.median(docker_times) * 1000
    nomad_ms = statistics.median(nomad_times) * 1000
    print(f"RESULT nomad_requests_per_execution={statistics.median(requests_per_run):g} "
          f"log_streams_per_execution=3 docker_runner_ms={docker_ms:.0f} "
          f"nomad_runner_ms={nomad_ms:.0f} nomad_added_ms={nomad_ms - docker_ms:.0f} "
          f"ratio={nomad_ms / docker_ms:.2f}")


if __name__ == "__main__":
    main()
