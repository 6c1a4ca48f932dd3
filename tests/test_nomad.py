"""The Nomad runner's jobs against HashiCorp's Job schema, the test double's recorded
behaviours, and what a run costs in Nomad API requests (real HTTP, real containers)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from jobs.runners.base import RunSpec
from jobs.runners.nomad import NomadRunner, execution_job, variable_path
from jobs.settings import Settings
from tests.nomad_double import NomadDouble

DATA = Path(__file__).parent / "nomad_data"


def _spec(**extra: Any) -> RunSpec:
    fields: dict[str, Any] = {
        "execution_id": f"e{time.monotonic_ns()}", "actor_id": "a1", "tenant": "T",
        "worker_id": "w1", "image": "abaco-test-echo",
        "env": {"MSG": "hello", "SECRET_ONE": "s3cr3t-value"}, "network": "none",
        "max_run_time_s": 30.0, "pids_limit": 64, "memory_bytes": 64 << 20, "cpus": 0.5,
        "user": "65534:65534"}
    return RunSpec(**{**fields, **extra})


def _job_validator() -> Any:
    yaml = pytest.importorskip("yaml")
    jsonschema_rs = pytest.importorskip("jsonschema_rs")
    document = yaml.safe_load((DATA / "openapi.yaml").read_text())
    return jsonschema_rs.validator_for({"$ref": "#/components/schemas/Job",
                                        "components": document["components"]})


def test_every_generated_job_validates_against_the_job_schema(settings: Settings):
    validator = _job_validator()
    for spec in (_spec(), _spec(confined=False, user=None, cpus=None, memory_bytes=None),
                 _spec(network="host", labels={"x": "y"})):
        job = execution_job(spec, settings)
        assert list(validator.iter_errors(job)) == [], job
    broken = {**execution_job(_spec(), settings), "Priority": "high"}
    assert list(validator.iter_errors(broken)), "the schema check can fail"


def test_no_environment_value_is_in_the_job(settings: Settings):
    job = json.dumps(execution_job(_spec(), settings))
    assert "s3cr3t-value" not in job and "hello" not in job
    assert variable_path("abaco-e1") == "nomad/jobs/abaco-e1"
    task = json.loads(job)["TaskGroups"][0]["Tasks"][0]
    assert task["Templates"][0]["Envvars"] is True and "Env" not in task
    group = json.loads(job)["TaskGroups"][0]
    assert group["RestartPolicy"]["Attempts"] == 0 and \
        group["ReschedulePolicy"] == {"Attempts": 0, "Unlimited": False}


@pytest.fixture
def double(images: list[str]) -> Any:
    with NomadDouble() as double:
        yield double


def test_the_double_answers_as_nomad_does(double: Any):
    base = double.address
    reply = requests.post(f"{base}/v1/jobs", json={"ID": "x"}, timeout=5)
    assert reply.status_code == 400 and reply.text == "Job must be specified"
    assert reply.headers["Content-Type"].startswith("text/plain")
    reply = requests.post(f"{base}/v1/jobs", json={"Job": {"ID": "x"}}, timeout=5)
    assert reply.status_code == 500 and reply.text.startswith("1 error occurred")
    assert requests.delete(f"{base}/v1/job/unknown", timeout=5).json()["EvalID"] == ""
    missing = requests.get(f"{base}/v1/allocation/nope", timeout=5)
    assert missing.status_code == 404 and missing.text == "alloc not found"
    assert "X-Nomad-Index" in missing.headers
    assert requests.get(f"{base}/v1/job/unknown/allocations", timeout=5).json() == []
    assert requests.get(f"{base}/v1/job/u/allocations?index=1&wait=x",
                        timeout=5).status_code == 400
    index = int(requests.get(f"{base}/v1/job/u/allocations", timeout=5).headers[
        "X-Nomad-Index"])
    begun = time.monotonic()
    held = requests.get(f"{base}/v1/job/u/allocations?index={index}&wait=1s", timeout=5)
    assert held.status_code == 200 and time.monotonic() - begun >= 0.9, "a blocking query"


def test_a_run_costs_a_handful_of_requests_and_secrets_reach_the_task(double: Any,
                                                                      settings: Settings):
    runner = NomadRunner(settings.replace(runner="nomad", nomad_addr=double.address))
    spec = _spec()
    double.state.requests.clear()
    handle = runner.start(spec)
    logs: list[bytes] = []
    result = runner.wait(handle, logs.append, time.time() + 60)
    runner.stop(handle, remove=True)
    assert result.exit_code == 0
    text = b"".join(logs).decode()
    assert "SECRET_ONE=s3cr3t-value" in text, "the variable reached the task's environment"
    counted = [r for r in double.state.requests if not r.startswith("GET /v1/client/fs/logs")]
    assert len(counted) <= 12, counted  # no polling: blocking queries only
    assert variable_path(handle) not in double.state.variables, "removed with the job"


def test_a_message_runs_end_to_end_through_nomad(double: Any, settings: Settings):
    """The real scheduler and worker (in threads), the Nomad runner, the double."""
    from tests.harness import running_harness
    from tests.waits import wait_until

    nomad = settings.replace(runner="nomad", nomad_addr=double.address)
    with running_harness(nomad, NomadRunner(nomad)) as harness:
        actor = harness.actor(image="abaco-test-echo")
        assert actor["status"] == "READY"
        eid = harness.send(actor["id"], "through nomad")
        harness.scheduler.reconcile("T", actor["id"])
        record = wait_until(lambda: (r := harness.execution(actor["id"], eid))["status"]
                            == "COMPLETE" and r, 60, "the execution through nomad")
        assert record["exit_code"] == 0 and record["handle"] == f"abaco-{eid}"
        logs = harness.platform.logs.get_logs("T", actor["id"], eid).decode()
        assert "Contents of MSG: through nomad" in logs


@pytest.mark.skipif(not os.environ.get("NOMAD_ADDR"),
                    reason="no Nomad agent here: set NOMAD_ADDR (and NOMAD_TOKEN) to run "
                           "this against a real one")
def test_a_run_on_a_real_agent(settings: Settings, images: list[str]):
    """The same run as on the double, on a real agent (a dev agent with the docker driver
    on this machine sees the locally built test images)."""
    from jobs.settings import Secret

    runner = NomadRunner(settings.replace(runner="nomad", nomad_addr=os.environ["NOMAD_ADDR"],
                                          nomad_token=Secret(os.environ.get("NOMAD_TOKEN",
                                                                            ""))))
    handle = runner.start(_spec())
    logs: list[bytes] = []
    result = runner.wait(handle, logs.append, time.time() + 120)
    runner.stop(handle, remove=True)
    assert result.exit_code == 0 and b"Contents of MSG: hello" in b"".join(logs)
