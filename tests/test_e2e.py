"""The whole platform as ``abaco up`` starts it: HTTP in, containers out.

Includes the crash tests: SIGKILL of a worker and of the API during a burst of
50 messages; every accepted message must end COMPLETE or ERROR with a reason,
none may stay SUBMITTED, and none may run twice (counted from Docker's own
container start events).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from jobs.settings import Settings
from tests.conftest import ROOT
from tests.docker_events import runs_begun
from tests.http_helpers import execution, ready_actor, result
from tests.waits import wait_until

FINAL = ("COMPLETE", "ERROR")


@pytest.fixture(scope="module")
def base(api_stack: Settings) -> str:
    return f"http://127.0.0.1:{api_stack.api_port}/actors"


def _all_final(base: str, actor_id: str, eids: list[str]) -> list[dict[str, Any]]:
    records = [execution(base, actor_id, eid) for eid in eids]
    return records if all(r["status"] in FINAL for r in records) else []


def test_quickstart(base: str):
    actor = ready_actor(base, name="quickstart")
    sent = result(requests.post(f"{base}/{actor['id']}/messages", data={"message": "hi"},
                                 timeout=10))
    eid = sent["executionId"]
    wait_until(lambda: execution(base, actor["id"], eid)["status"] == "COMPLETE", 60,
               "execution COMPLETE")
    listing = result(requests.get(f"{base}/{actor['id']}/executions", timeout=10))
    assert [e["id"] for e in listing["executions"]] == [eid]
    record = execution(base, actor["id"], eid)
    assert record["exitCode"] == 0 and record["runtime"] >= 0 and record["workerId"]
    assert listing["totalRuntime"] == pytest.approx(record["runtime"])
    assert listing["totalCpu"] == record["cpu"] and listing["totalIo"] == record["io"]
    logs = result(requests.get(f"{base}/{actor['id']}/executions/{eid}/logs", timeout=10))
    assert "Contents of MSG: hi" in logs["logs"]


def test_synchronous_message_answers_with_the_logs(base: str):
    actor = ready_actor(base)
    reply = requests.post(f"{base}/{actor['id']}/messages?_abaco_synchronous=true",
                          data={"message": "sync"}, timeout=60)
    assert reply.status_code == 200
    assert "Contents of MSG: sync" in reply.text


def test_an_unpullable_image_puts_the_actor_in_error(base: str):
    actor = result(requests.post(base, json={"image": "abaco-test-nowhere:1"}, timeout=10))
    found = wait_until(lambda: (a := result(requests.get(f"{base}/{actor['id']}", timeout=10)))[
        "status"] == "ERROR" and a, 60, "actor ERROR")
    assert "abaco-test-nowhere:1" in found["statusMessage"]
    reply = requests.post(f"{base}/{actor['id']}/messages", data={"message": "x"}, timeout=10)
    assert reply.status_code == 409


def _burst(base: str, actor_id: str, count: int) -> list[str | None]:
    def send(i: int) -> str | None:
        try:
            reply = requests.post(f"{base}/{actor_id}/messages", data={"message": f"m{i}"},
                                  timeout=10)
        except requests.RequestException:
            return None
        return str(reply.json()["result"]["executionId"]) if reply.status_code == 200 else None

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(send, range(count)))


def _check_no_loss_no_rerun(base: str, docker_client: Any, actor_id: str, eids: list[str],
                            since: float) -> list[dict[str, Any]]:
    records = wait_until(lambda: _all_final(base, actor_id, eids), 240, "every execution final")
    for record in records:
        if record["status"] == "ERROR":
            assert record["statusMessage"], record
    listing = result(requests.get(f"{base}/{actor_id}/executions", timeout=10))
    assert all(e["status"] in FINAL for e in listing["executions"]), "an execution stayed open"
    starts = runs_begun(docker_client, actor_id, since)
    assert max(starts.values()) == 1, f"ran twice: {starts.most_common(3)}"
    return records


def test_sigkill_of_a_worker_during_a_burst(base: str, api_stack: Settings, docker_client: Any):
    actor = ready_actor(base, defaultEnvironment={"SLEEP": "0.3"})
    since = time.time()
    eids = [e for e in _burst(base, actor["id"], 50) if e]
    assert len(eids) == 50
    workers = api_stack.data_dir / "run" / "workers"
    wait_until(lambda: sum(execution(base, actor["id"], e)["status"] == "COMPLETE"
                           for e in eids[:5]) >= 2, 60, "a few executions done")
    pid_files = wait_until(lambda: list(workers.glob("*.pid")), 30, "a worker pid file")
    for pid_file in pid_files:
        os.kill(int(pid_file.read_text()), signal.SIGKILL)
    records = _check_no_loss_no_rerun(base, docker_client, actor["id"], eids, since)
    wrong = [r for r in records if r["status"] != "COMPLETE" or r["exitCode"] != 0]
    assert not wrong, f"a killed worker's runs are adopted, not lost: {wrong[:3]}"
    assert len({r["workerId"] for r in records if r["status"] == "COMPLETE"}) >= 2, \
        "a replacement worker should have taken over"


def test_sigkill_of_the_api_during_a_burst(base: str, api_stack: Settings, docker_client: Any):
    actor = ready_actor(base)
    since = time.time()
    api_pid = int((api_stack.data_dir / "run" / "api.pid").read_text())
    results: list[str | None] = []
    sender = threading.Thread(target=lambda: results.extend(_burst(base, actor["id"], 50)))
    sender.start()
    wait_until(lambda: result(requests.get(f"{base}/{actor['id']}/executions", timeout=10))[
        "totalExecutions"] >= 10, 60, "part of the burst accepted")
    os.killpg(api_pid, signal.SIGKILL)
    sender.join(120)
    env = {**os.environ, **api_stack.as_env()}
    restarted = subprocess.run([sys.executable, "-m", "launcher.cli", "up"], env=env, cwd=ROOT,
                               capture_output=True, text=True, timeout=120, check=False)
    assert restarted.returncode == 0, restarted.stderr
    accepted = [e for e in results if e]
    assert 10 <= len(accepted) <= 50
    listing = result(requests.get(f"{base}/{actor['id']}/executions", timeout=10))
    every = [e["id"] for e in listing["executions"]]
    assert set(accepted) <= set(every)
    _check_no_loss_no_rerun(base, docker_client, actor["id"], every, since)


def test_an_updated_actor_becomes_ready_on_its_new_image(base: str):
    actor = ready_actor(base)
    updated = result(requests.put(f"{base}/{actor['id']}", json={"image": "abaco-test-fail"},
                                   timeout=10))
    assert updated["revision"] == 2
    wait_until(lambda: result(requests.get(f"{base}/{actor['id']}", timeout=10))["status"]
               == "READY", 30, "updated actor READY")
    eid = result(requests.post(f"{base}/{actor['id']}/messages", data={"message": "x"},
                                timeout=10))["executionId"]
    record = wait_until(lambda: (r := execution(base, actor["id"], eid))["status"] in FINAL
                        and r, 60, "execution final")
    assert record["status"] == "COMPLETE" and record["exitCode"] == 3
    assert record["revision"] == 2
