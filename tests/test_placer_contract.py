"""One contract, every placer: MemoryPlacer (threads), LocalPlacer (processes) and
NomadPlacer (allocations of a service job on the Nomad double, its workers real
processes through the raw_exec driver).

A placer runs workers the scheduler registered; it counts the workers registered on
its host (not its own children) against the cap, reports workers whose process ended,
and releases them gracefully (the current execution finishes) or not (the run is left
for adoption)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from jobs.runners.fake import FakeRun, FakeRunner
from jobs.service import Platform
from jobs.settings import Settings
from scheduler.loop import Scheduler
from tests.harness import CALLER, fast_settings
from tests.waits import wait_until


@pytest.fixture(params=["memory", "local", "nomad"])
def rig(request: pytest.FixtureRequest, settings: Settings) -> Iterator[tuple[Any, Any, Any]]:
    """(platform, runner, placer): the local and Nomad placers run real worker processes,
    which use the real Docker engine; the memory placer runs threads on the fake engine."""
    fast = fast_settings(settings).replace(max_workers_per_host=2)
    if request.param == "nomad":
        yield from _nomad_rig(request, fast)
        return
    platform = Platform.from_settings(fast)
    platform.logs.ensure_bucket()
    if request.param == "memory":
        from jobs.placers.memory import MemoryPlacer

        runner: Any = FakeRunner(lambda spec: FakeRun(duration_s=float(spec.env.get("SLEEP",
                                                                                  "0"))))
        placer: Any = MemoryPlacer(fast, platform.store, runner, platform.logs,
                                   platform.secrets)
        image = "img-a"
    else:
        request.getfixturevalue("images")
        from jobs.placers.local import LocalPlacer
        from jobs.runners.docker import DockerRunner

        runner = DockerRunner(fast)
        placer = LocalPlacer(fast, platform.store)
        image = "abaco-test-echo"
    platform.image = image  # type: ignore[attr-defined]
    yield platform, runner, placer
    placer.drain(10)


def _nomad_rig(request: pytest.FixtureRequest,
               fast: Settings) -> Iterator[tuple[Any, Any, Any]]:
    request.getfixturevalue("images")
    from jobs.placers.nomad import NomadPlacer
    from jobs.runners.docker import DockerRunner
    from tests.nomad_double import NomadDouble

    with NomadDouble() as double:
        fast = fast.replace(placer="nomad", nomad_addr=double.address, nomad_max_workers=2,
                            nomad_worker_driver="raw_exec")
        platform = Platform.from_settings(fast)
        platform.logs.ensure_bucket()
        platform.image = "abaco-test-echo"  # type: ignore[attr-defined]
        yield platform, DockerRunner(fast), NomadPlacer(fast, platform.store)


def _ready(platform: Platform, scheduler: Scheduler, **fields: Any) -> dict[str, Any]:
    fields.setdefault("defaultEnvironment", {"SLEEP": "0"})  # messages may set it
    actor = platform.create_actor(CALLER, {"image": platform.image, **fields})  # type: ignore[attr-defined]
    platform.store.update_actor("T", actor["id"], {"status": "READY"})
    return platform.store.get_actor("T", actor["id"])


def test_a_placed_worker_serves_its_actor_and_leaves_when_released(rig: Any):
    platform, runner, placer = rig
    scheduler = Scheduler(platform.settings, platform.store, runner, placer)
    assert scheduler.acquire_lock()
    actor = _ready(platform, scheduler)
    worker_id = scheduler.start_worker(actor)
    assert worker_id is not None
    eid = platform.send_message(CALLER, actor["id"], __import__(
        "jobs.service").service.Message("hi", "str", {}))["execution_id"]
    wait_until(lambda: platform.store.get_execution("T", actor["id"], eid)["status"]
               == "COMPLETE", 60, "served")
    wait_until(lambda: any(w["status"] == "READY" for w in platform.store.workers(
        "T", actor["id"])), 30, "worker READY")
    placer.release(worker_id, graceful=True)
    wait_until(lambda: ("T", actor["id"], worker_id) in placer.ended(), 30, "worker ended")
    assert platform.store.workers("T", actor["id"]) == []


def test_capacity_counts_workers_registered_on_the_host_not_children(rig: Any):
    platform, runner, placer = rig
    scheduler = Scheduler(platform.settings, platform.store, runner, placer)
    assert scheduler.acquire_lock()
    actor = _ready(platform, scheduler)
    assert placer.capacity() == 2
    # a worker registered on this host by another scheduler process (after a failover):
    platform.store.inbox.register(scheduler.epoch, "T", actor["id"],
                                  {"id": "elsewhere", "host_id": placer.host}, 30, -1, 1)
    platform.store.add_host_worker(placer.host, "T", actor["id"], "elsewhere")
    assert placer.capacity() == 1
    platform.store.inbox.remove(scheduler.epoch, "T", actor["id"], "elsewhere", force=True)
    assert placer.capacity() == 2, "a worker that is gone frees its slot"


def test_a_killed_worker_is_reported_ended_and_its_run_adopted(rig: Any):
    platform, runner, placer = rig
    scheduler = Scheduler(platform.settings, platform.store, runner, placer)
    assert scheduler.acquire_lock()
    actor = _ready(platform, scheduler)
    from jobs.service import Message

    eid = platform.send_message(CALLER, actor["id"], Message("hi", "str", {"SLEEP": "2"}))[
        "execution_id"]
    worker_id = scheduler.start_worker(actor)
    assert worker_id
    wait_until(lambda: platform.store.get_execution("T", actor["id"], eid)["status"]
               == "RUNNING", 60, "RUNNING")
    placer.release(worker_id, graceful=False)
    wait_until(lambda: scheduler._collect_ended() or scheduler.ended, 30, "worker ended")
    wait_until(lambda: scheduler.reconcile("T", actor["id"]) or platform.store.get_execution(
        "T", actor["id"], eid)["status"] == "COMPLETE", 90, "adopted and COMPLETE")
    record = platform.store.get_execution("T", actor["id"], eid)
    assert record["exit_code"] == 0 and record["worker_id"] != worker_id
