"""The platform end to end on the Nomad double, with ``runner = "nomad"`` and
``placer = "nomad"``: HTTP in, a service job of warm workers (real processes through
the raw_exec driver), each execution a batch job whose allocation runs the actor
image and the results relay as real containers.

The quickstart, results, binary messages, and two faults: a worker SIGKILLed during
a burst (its runs are adopted, none runs twice) and a frozen worker (a lost
allocation: fenced, replaced, and its run finished by another worker).
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from werkzeug.serving import make_server

from jobs.runners.docker import LABEL_EXECUTION
from jobs.settings import Settings
from tests.harness import fast_settings
from tests.http_helpers import execution, ready_actor, result
from tests.nomad_double import NomadDouble, on_double
from tests.waits import wait_until

FINAL = ("COMPLETE", "ERROR")


@pytest.fixture(scope="module")
def stack(services: Settings, images: list[str], relay_image: str,
          python_image: str) -> Iterator[tuple[str, NomadDouble, Settings]]:
    """The API on a real HTTP server and the scheduler's own loop, in this process; the
    workers and runs on the double."""
    from api.app import create_app
    from jobs.placers import make_placer
    from jobs.runners import make_runner
    from jobs.service import Platform
    from scheduler.loop import Scheduler

    with NomadDouble() as double:
        settings = on_double(fast_settings(services), double, prefix="nomade2e",
                             placer="nomad", nomad_worker_driver="raw_exec",
                             nomad_max_workers=4, drain_timeout_s=3.0)
        platform = Platform.from_settings(settings)
        platform.logs.ensure_bucket()
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        server = make_server("127.0.0.1", 0, create_app(settings, platform), threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        runner = make_runner(settings)
        scheduler = Scheduler(settings, platform.store, runner,
                              make_placer(settings, platform.store, runner, platform.logs,
                                          platform.secrets), platform.logs)
        loop = threading.Thread(target=scheduler.run, daemon=True)
        loop.start()
        running[:] = [scheduler, loop]
        try:
            yield f"http://127.0.0.1:{server.server_port}/actors", double, settings
        finally:
            running[0].stopping.set()
            running[1].join(15)
            server.shutdown()


running: list[Any] = []  # the stack's current scheduler and its thread


def _complete(base: str, actor_id: str, eid: str, within_s: float = 90) -> dict[str, Any]:
    return wait_until(lambda: (r := execution(base, actor_id, eid))["status"] in FINAL and r,
                      within_s, f"execution {eid} final")


def _worker_processes(double: NomadDouble, actor_id: str) -> list[Any]:
    """The live raw_exec worker processes of the actor's worker job."""
    return [handle.process for alloc in list(double.state.allocs.values())
            if actor_id in alloc["JobID"] and alloc["JobID"].startswith("abaco-workers-")
            for handle in list(alloc["handles"].values())
            if hasattr(handle, "process") and handle.process.poll() is None]


def test_quickstart_on_nomad(stack: Any):
    base, double, _settings = stack
    actor = ready_actor(base, name="quickstart")
    sent = result(requests.post(f"{base}/{actor['id']}/messages", data={"message": "hi"},
                                 timeout=10))
    record = _complete(base, actor["id"], sent["executionId"])
    assert record["status"] == "COMPLETE" and record["exitCode"] == 0, record
    logs = result(requests.get(f"{base}/{actor['id']}/executions/{sent['executionId']}/logs",
                                timeout=10))
    assert "Contents of MSG: hi" in logs["logs"]
    workers = result(requests.get(f"{base}/{actor['id']}/workers", timeout=10))
    assert workers and any(j.startswith("abaco-workers-") for j in double.state.jobs), \
        "the warm worker is an allocation of the actor's service job"
    assert any(f"/v1/job/abaco-{sent['executionId']}" in r for r in double.state.requests), \
        "the execution was a Nomad batch job"


def test_results_and_binary_messages_through_nomad(stack: Any):
    base, _double, _settings = stack
    python = ready_actor(base, image="abaco-test-python")
    eid = result(requests.post(f"{base}/{python['id']}/messages", data={"message": "r"},
                                timeout=10))["executionId"]
    assert _complete(base, python["id"], eid)["status"] == "COMPLETE"
    first = requests.get(f"{base}/{python['id']}/executions/{eid}/results", timeout=10)
    assert first.status_code == 200 and first.content == b"bytes for r"
    second = requests.get(f"{base}/{python['id']}/executions/{eid}/results", timeout=10)
    assert pickle.loads(second.content)["answer"] == 42
    echo = ready_actor(base)
    eid = result(requests.post(f"{base}/{echo['id']}/messages", data=b"\x01" * 777,
                                headers={"Content-Type": "application/octet-stream"},
                                timeout=10))["executionId"]
    assert _complete(base, echo["id"], eid)["status"] == "COMPLETE"
    logs = result(requests.get(f"{base}/{echo['id']}/executions/{eid}/logs", timeout=10))
    assert "binary bytes: 777" in logs["logs"]


def _starts(docker_client: Any, actor_id: str, since: float) -> Counter[str]:
    events = docker_client.events(since=int(since) - 1, until=int(time.time()) + 1, decode=True,
                                  filters={"event": "start", "label": f"abaco.actor={actor_id}"})
    return Counter(e["Actor"]["Attributes"][LABEL_EXECUTION] for e in events)


def test_sigkill_of_a_nomad_worker_during_a_burst(stack: Any, docker_client: Any):
    base, double, _settings = stack
    actor = ready_actor(base, defaultEnvironment={"SLEEP": "0.2"}, maxWorkers=2)
    since = time.time()
    eids = [result(requests.post(f"{base}/{actor['id']}/messages", data={"message": f"m{i}"},
                                  timeout=10))["executionId"] for i in range(12)]
    wait_until(lambda: any(execution(base, actor["id"], e)["status"] == "RUNNING"
                           for e in eids), 60, "a run under way")
    victims = wait_until(lambda: _worker_processes(double, actor["id"]), 30, "a worker")
    for process in victims:
        os.kill(process.pid, signal.SIGKILL)
    records = [_complete(base, actor["id"], e, 240) for e in eids]
    wrong = [r for r in records if r["status"] != "COMPLETE" or r["exitCode"] != 0]
    assert not wrong, f"a killed worker's runs are adopted, not lost: {wrong[:3]}"
    starts = _starts(docker_client, actor["id"], since)
    assert set(starts) == set(eids) and max(starts.values()) == 1, starts.most_common(3)


def test_a_frozen_nomad_worker_is_fenced_and_its_run_finished_by_another(stack: Any,
                                                                         docker_client: Any):
    """A lost allocation: its worker stops beating while its run goes on. The scheduler
    removes it (fencing), stops its allocation, Nomad places a replacement, and the new
    worker adopts the run; the frozen worker, thawed, writes nothing."""
    base, double, _settings = stack
    actor = ready_actor(base, defaultEnvironment={"SLEEP": "4"})
    since = time.time()
    eid = result(requests.post(f"{base}/{actor['id']}/messages", data={"message": "f"},
                                timeout=10))["executionId"]
    running = wait_until(lambda: (r := execution(base, actor["id"], eid))["status"] ==
                         "RUNNING" and r, 60, "RUNNING")
    frozen = _worker_processes(double, actor["id"])
    for process in frozen:
        os.kill(process.pid, signal.SIGSTOP)
    try:
        record = _complete(base, actor["id"], eid, 120)
    finally:
        for process in frozen:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGCONT)
    assert record["status"] == "COMPLETE" and record["exitCode"] == 0, record
    assert record["workerId"] != running["workerId"], "another worker finished it"
    assert _starts(docker_client, actor["id"], since)[eid] == 1, "adopted, not run again"
    wait_until(lambda: all(p.poll() is not None for p in frozen), 30,
               "the frozen worker's allocation stopped")
    assert execution(base, actor["id"], eid) == record, "the fenced worker wrote nothing"


def test_a_new_scheduler_takes_over_the_worker_jobs(stack: Any, docker_client: Any):
    """The active scheduler stops mid-burst; a new one (a fresh Nomad placer, which reads
    the worker jobs back from Nomad) takes over, and every message runs exactly once."""
    from jobs.placers import make_placer
    from jobs.runners import make_runner
    from jobs.service import Platform
    from scheduler.loop import Scheduler

    base, double, settings = stack
    actor = ready_actor(base, defaultEnvironment={"SLEEP": "0.3"})
    since = time.time()
    eids = [result(requests.post(f"{base}/{actor['id']}/messages", data={"message": f"s{i}"},
                                  timeout=10))["executionId"] for i in range(8)]
    wait_until(lambda: any(execution(base, actor["id"], e)["status"] == "COMPLETE"
                           for e in eids), 60, "a first execution done")
    old, old_loop = running
    old.stopping.set()
    old_loop.join(30)
    platform = Platform.from_settings(settings)
    runner = make_runner(settings)
    placer = make_placer(settings, platform.store, runner, platform.logs, platform.secrets)
    successor = Scheduler(settings, platform.store, runner, placer, platform.logs)
    loop = threading.Thread(target=successor.run, daemon=True)
    loop.start()
    running[:] = [successor, loop]
    records = [_complete(base, actor["id"], e, 180) for e in eids]
    assert all(r["status"] == "COMPLETE" and r["exitCode"] == 0 for r in records), records
    assert max(_starts(docker_client, actor["id"], since).values()) == 1
    job = next(j for j in double.state.jobs if actor["id"] in j)
    assert placer.counts is not None and any(actor["id"] == a for _t, a in placer.counts), \
        f"the successor knows {job}'s count"
