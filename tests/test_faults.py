"""Faults on the real stack (``abaco up``, real Docker): a burst over several actors,
then kill -9 of one component, which ``abaco up`` restarts. Per fault: every accepted
message ends COMPLETE with its container's true exit code, none runs twice (the engine's
own start events), none stays queued or running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
import requests

from jobs.settings import Settings
from tests.conftest import ROOT
from tests.http_helpers import execution, ready_actor
from tests.test_e2e import _burst, _check_no_loss_no_rerun
from tests.waits import wait_until

ACTORS = 3
PER_ACTOR = 12


@pytest.fixture(scope="module")
def base(api_stack: Settings) -> str:
    return f"http://127.0.0.1:{api_stack.api_port}/actors"


def _kill_workers(stack: Settings) -> int:
    pids = [int(f.read_text()) for f in (stack.data_dir / "run" / "workers").glob("*.pid")]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
    return len(pids)


def _kill_scheduler(stack: Settings) -> int:
    pid = int((stack.data_dir / "run" / "scheduler.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    return 1


def _kill_component(name: str) -> Any:
    def kill(stack: Settings) -> int:
        pid_file = stack.data_dir / "run" / f"{name}.pid"
        if not pid_file.exists():
            pytest.skip(f"{name} was not started by this stack (it is reused)")
        os.kill(int(pid_file.read_text()), signal.SIGKILL)
        return 1

    kill.__name__ = f"kill_{name}"
    return kill


def _abaco_up(stack: Settings) -> None:
    done = subprocess.run([sys.executable, "-m", "launcher.cli", "up"],
                          env={**os.environ, **stack.as_env()}, cwd=ROOT, capture_output=True,
                          text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("fault", [
    _kill_workers, _kill_scheduler, _kill_component("redis"), _kill_component("vault"),
    _kill_component("dockerd")], ids=["kill-workers", "kill-scheduler", "kill-redis",
                                       "kill-openbao", "kill-docker-engine"])
def test_a_burst_survives_a_killed_component(fault: Any, base: str, api_stack: Settings,
                                             docker_client: Any):
    actors = [ready_actor(base, defaultEnvironment={"SLEEP": "0.5"}) for _ in range(ACTORS)]
    since = time.time()
    sent = {a["id"]: [e for e in _burst(base, a["id"], PER_ACTOR) if e] for a in actors}
    assert all(len(eids) == PER_ACTOR for eids in sent.values())
    first = actors[0]["id"]
    wait_until(lambda: any(execution(base, first, e)["status"] == "RUNNING"
                           for e in sent[first]), 60, "a run in flight")
    assert fault(api_stack) >= 1
    _abaco_up(api_stack)
    wait_until(lambda: _answers(base), 60, "the API answering again")
    for actor_id, eids in sent.items():
        records = _check_no_loss_no_rerun(base, docker_client, actor_id, eids, since)
        wrong = [r for r in records if r["status"] != "COMPLETE" or r["exitCode"] != 0]
        assert not wrong, f"{fault.__name__}: {wrong[:2]}"
        queued = requests.get(f"{base}/{actor_id}/messages", timeout=10).json()["result"]
        assert queued["messages"] == 0
    ours = {eid for eids in sent.values() for eid in eids}
    wait_until(lambda: not [c for c in docker_client.containers.list(
        all=True, filters={"label": "abaco.execution"}) if c.labels["abaco.execution"] in ours],
        30, "nothing of a run left on the engine once its record is final")


def _answers(base: str) -> bool:
    try:
        return requests.get(base, timeout=5).status_code == 200
    except requests.RequestException:
        return False
