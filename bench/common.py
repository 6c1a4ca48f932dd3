"""Shared pieces of the benchmarks: the API client side, percentiles, raw docker runs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "images"), str(ROOT)]
from build import build_all  # noqa: E402

from tests.docker_events import runs_begun  # noqa: E402
from tests.waits import wait_until  # noqa: E402

NOOP = "abaco-test-noop"
__all__ = ["NOOP", "stack_api", "build_all", "percentile", "raw_run", "create_actor", "wait_ready",
           "wait_all_final", "starts_per_execution", "progress"]


def stack_api() -> str:
    """The running stack's API: ``ABACO_URL``, else the settings' (``ABACO_API_PORT`` and
    the rest, as ``abaco up`` read them in this environment)."""
    from jobs.settings import load_settings

    return os.environ.get("ABACO_URL") or load_settings().api_url


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def raw_run(network: str, image: str = NOOP) -> float:
    """Seconds for one ``docker run --rm`` of ``image``."""
    start = time.perf_counter()
    subprocess.run(["docker", "run", "--rm", "--network", network, image], check=True,
                   capture_output=True)
    return time.perf_counter() - start


def progress(label: str, done: int, total: int) -> None:
    print(f"\r{label} {done}/{total}", end="" if done < total else "\n", file=sys.stderr)


def create_actor(api: str, **fields: Any) -> dict[str, Any]:
    reply = requests.post(f"{api}/actors", json={"image": NOOP, **fields}, timeout=10)
    reply.raise_for_status()
    return dict(reply.json()["result"])


def wait_ready(api: str, actor_id: str, timeout_s: float = 60) -> None:
    _wait(lambda: requests.get(f"{api}/actors/{actor_id}", timeout=10).json()["result"][
        "status"] == "READY", timeout_s, "actor READY")


def wait_all_final(api: str, actor_ids: list[str], expected: int,
                   timeout_s: float) -> list[dict[str, Any]]:
    """Every execution of these actors, once ``expected`` of them are final."""
    by_actor: dict[str, list[dict[str, Any]]] = {}
    settled: set[str] = set()

    def done() -> bool:
        for actor_id in actor_ids:
            if actor_id in settled:
                continue  # polling only what is still moving keeps the bench's own load low
            listing = requests.get(f"{api}/actors/{actor_id}/executions", timeout=30).json()
            by_actor[actor_id] = listing["result"]["executions"]
            if all(r["status"] in ("COMPLETE", "ERROR") for r in by_actor[actor_id]):
                settled.add(actor_id)
        final = sum(r["status"] in ("COMPLETE", "ERROR")
                    for records in by_actor.values() for r in records)
        progress("final", min(final, expected), expected)
        return final >= expected

    _wait(done, timeout_s, "executions final", interval_s=3.0)
    return [r for records in by_actor.values() for r in records]


def starts_per_execution(since: float, actor_ids: set[str]) -> Counter[str]:
    """Runs begun per execution (plain starts and prewarmed deliveries), from Docker's
    own event log."""
    import docker

    client = docker.from_env(version="auto")
    begun: Counter[str] = Counter()
    for actor_id in actor_ids:
        begun.update(runs_begun(client, actor_id, since))
    return begun


def _wait(probe: Any, timeout_s: float, what: str, interval_s: float = 0.05) -> None:
    try:
        wait_until(probe, timeout_s, what, interval_s)
    except AssertionError as exc:
        raise SystemExit(str(exc)) from None
