"""Workers and scheduler as ``abaco up`` runs them: scaling, update, cancel, limits, failover."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
import redis
import requests

from jobs.keys import Keys
from jobs.settings import Settings
from jobs.store import Store
from tests.conftest import ROOT
from tests.http_helpers import execution, ready_actor, result
from tests.test_e2e import (
    FINAL,
    _all_final,
    _burst,
    _check_no_loss_no_rerun,
)
from tests.waits import wait_until


@pytest.fixture(scope="module")
def base(api_stack: Settings) -> str:
    return f"http://127.0.0.1:{api_stack.api_port}/actors"


def _send(base: str, actor_id: str, message: str = "m", **params: str) -> str:
    reply = requests.post(f"{base}/{actor_id}/messages", params=params,
                          data={"message": message}, timeout=10)
    return str(result(reply)["executionId"])


def _workers(base: str, actor_id: str) -> list[dict[str, Any]]:
    return list(result(requests.get(f"{base}/{actor_id}/workers", timeout=10)))


def _final(base: str, actor_id: str, eid: str, timeout_s: float = 60) -> dict[str, Any]:
    return wait_until(lambda: (r := execution(base, actor_id, eid))["status"] in FINAL and r,
                      timeout_s, f"execution {eid} final")


def test_scale_up_on_backlog_then_down_to_zero(base: str):
    actor = ready_actor(base, maxWorkers=3, defaultEnvironment={"SLEEP": "2"})
    eids = [_send(base, actor["id"], str(i)) for i in range(6)]
    wait_until(lambda: len(_workers(base, actor["id"])) == 3, 30, "three workers")
    records = wait_until(lambda: _all_final(base, actor["id"], eids), 90, "all final")
    assert {r["status"] for r in records} == {"COMPLETE"}
    assert len({r["workerId"] for r in records}) == 3
    assert sum(r["cold"] for r in records) == 3, "one cold start per worker"
    wait_until(lambda: _workers(base, actor["id"]) == [], 60, "scale to zero when idle")


def test_min_workers_stay_warm(base: str):
    actor = ready_actor(base, minWorkers=1)
    worker = wait_until(lambda: [w for w in _workers(base, actor["id"])
                                 if w["status"] == "READY"], 30, "a warm worker")[0]
    assert worker["revision"] == 1 and worker["image"] == "abaco-test-echo"
    eid = _send(base, actor["id"])
    record = _final(base, actor["id"], eid)
    assert record["workerId"] == worker["id"]
    requests.delete(f"{base}/{actor['id']}", timeout=10)


def test_a_stateful_actor_never_has_two_workers(base: str):
    actor = ready_actor(base, stateless=False, defaultEnvironment={"SLEEP": "0.5"})
    eids = [_send(base, actor["id"], str(i)) for i in range(5)]
    most = 0
    deadline = time.monotonic() + 60
    while not _all_final(base, actor["id"], eids) and time.monotonic() < deadline:
        most = max(most, len(_workers(base, actor["id"])))
    records = _all_final(base, actor["id"], eids)
    assert records and most == 1
    spans = sorted((r["startTime"], r["finishTime"]) for r in records)
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False)), "overlap"


def test_hot_update_during_a_burst(base: str, docker_client: Any):
    actor = ready_actor(base, defaultEnvironment={"SLEEP": "0.2"}, maxWorkers=2)
    since = time.time()
    first = [e for e in _burst(base, actor["id"], 15) if e]
    wait_until(lambda: any(execution(base, actor["id"], e)["status"] == "COMPLETE"
                           for e in first), 60, "first executions done")
    updated = result(requests.put(f"{base}/{actor['id']}", data={"force": "true"},
                                   timeout=10))
    assert updated["revision"] == 2
    updated_at = time.time()
    second = [e for e in _burst(base, actor["id"], 15) if e]
    assert len(first) + len(second) == 30
    records = _check_no_loss_no_rerun(base, docker_client, actor["id"], first + second, since)
    assert {r["status"] for r in records} == {"COMPLETE"}
    assert {r["revision"] for r in records} == {1, 2}
    from jobs.timeutil import parse_iso

    late = [r for r in records if parse_iso(r["startTime"]).timestamp() > updated_at + 5]
    assert all(r["revision"] == 2 for r in late)


def test_cancel_a_running_and_a_queued_execution(base: str):
    actor = ready_actor(base, stateless=False, defaultEnvironment={"SLEEP": "60"})
    running = _send(base, actor["id"])
    queued = _send(base, actor["id"])
    wait_until(lambda: execution(base, actor["id"], running)["status"] == "RUNNING", 30,
               "RUNNING")
    dropped = result(requests.delete(f"{base}/{actor['id']}/executions/{queued}",
                                      timeout=10))
    assert dropped["status"] == "COMPLETE" and dropped["startTime"] is None
    assert "cancelled" in dropped["statusMessage"]
    started = time.monotonic()
    assert requests.delete(f"{base}/{actor['id']}/executions/{running}",
                           timeout=10).status_code == 200
    record = _final(base, actor["id"], running, 10)
    assert time.monotonic() - started < 2.5
    assert record["status"] == "COMPLETE" and "cancelled" in record["statusMessage"]
    assert record["exitCode"] != 0
    again = requests.delete(f"{base}/{actor['id']}/executions/{queued}", timeout=10)
    assert again.status_code == 409


def test_max_run_time_and_memory_limit(base: str):
    slow = ready_actor(base, maxRunTime=1, defaultEnvironment={"SLEEP": "30"})
    record = _final(base, slow["id"], _send(base, slow["id"]), 30)
    assert record["status"] == "COMPLETE" and "maximum run time" in record["statusMessage"]
    assert record["runtime"] < 10
    hog = result(requests.post(base, json={"image": "abaco-test-memhog", "memLimit": "32m",
                                            "defaultEnvironment": {"MB": "200"}}, timeout=10))
    wait_until(lambda: result(requests.get(f"{base}/{hog['id']}", timeout=10))["status"]
               == "READY", 30, "READY")
    record = _final(base, hog["id"], _send(base, hog["id"]), 60)
    assert record["finalState"]["OOMKilled"] is True


def test_workers_api(base: str):
    actor = ready_actor(base, defaultEnvironment={"SLEEP": "3"})
    assert result(requests.post(f"{base}/{actor['id']}/workers", data={"num": "2"},
                                 timeout=10)) == {"num": 2}
    workers = wait_until(lambda: len(w := _workers(base, actor["id"])) == 2 and w, 30,
                         "two workers")
    one = result(requests.get(f"{base}/{actor['id']}/workers/{workers[0]['id']}", timeout=10))
    assert one["id"] == workers[0]["id"] and one["status"] in ("REQUESTED", "READY")
    eid = _send(base, actor["id"])
    wait_until(lambda: execution(base, actor["id"], eid)["status"] == "RUNNING", 30, "RUNNING")
    busy = execution(base, actor["id"], eid)["workerId"]
    assert requests.delete(f"{base}/{actor['id']}/workers/{busy}", timeout=10).status_code == 200
    assert _final(base, actor["id"], eid)["status"] == "COMPLETE", "graceful: it finished"
    wait_until(lambda: busy not in {w["id"] for w in _workers(base, actor["id"])}, 30,
               "the stopped worker gone")
    assert requests.post(f"{base}/{actor['id']}/workers", data={"num": "0"},
                         timeout=10).status_code == 400
    assert requests.get(f"{base}/{actor['id']}/workers/nope", timeout=10).status_code == 404


def test_sigterm_to_a_worker_finishes_its_execution_and_keeps_the_queue(
        base: str, api_stack: Settings):
    actor = ready_actor(base, stateless=False, defaultEnvironment={"SLEEP": "2"})
    running = _send(base, actor["id"], "first")
    queued = [_send(base, actor["id"], f"q{i}") for i in range(2)]
    wait_until(lambda: execution(base, actor["id"], running)["status"] == "RUNNING", 30,
               "RUNNING")
    worker = _workers(base, actor["id"])[0]
    os.kill(int(worker["pid"]), signal.SIGTERM)
    record = _final(base, actor["id"], running)
    assert record["status"] == "COMPLETE" and record["exitCode"] == 0
    rest = wait_until(lambda: _all_final(base, actor["id"], queued), 60, "queued ones run")
    assert all(r["status"] == "COMPLETE" and r["workerId"] != worker["id"] for r in rest)


def test_kill_9_of_the_active_scheduler_hands_over_to_the_standby(
        base: str, api_stack: Settings):
    store = Store.from_settings(api_stack)
    env = {**os.environ, **api_stack.as_env()}
    log = open(api_stack.data_dir / "logs" / "standby.log", "ab")  # noqa: SIM115
    standby = subprocess.Popen([sys.executable, "-m", "scheduler"], env=env, cwd=ROOT,
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        holder = store.r.get(store.keys.scheduler_lock())
        assert holder is not None
        active_pid = int(holder.decode().split(":")[1])
        assert active_pid != standby.pid
        os.kill(active_pid, signal.SIGKILL)
        wait_until(lambda: (h := store.r.get(store.keys.scheduler_lock())) is not None
                   and int(h.decode().split(":")[1]) == standby.pid, 20, "standby takes over")
        actor = ready_actor(base)
        assert _final(base, actor["id"], _send(base, actor["id"]))["status"] == "COMPLETE"
    finally:
        standby.send_signal(signal.SIGTERM)
        standby.wait(60)
        log.close()
        restarted = subprocess.run([sys.executable, "-m", "launcher.cli", "up"], env=env, cwd=ROOT,
                                   capture_output=True, text=True, timeout=120, check=False)
        assert restarted.returncode == 0, restarted.stderr


def test_the_lock_has_a_ttl(api_stack: Settings):
    client = redis.Redis.from_url(api_stack.redis_url,
                                  password=api_stack.redis_password.reveal())
    lock = Keys(api_stack.prefix).scheduler_lock()
    wait_until(lambda: client.exists(lock), 10, "lock held")
    assert 0 < client.pttl(lock) <= 3000

