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
from tests.nomad_double import NomadDouble, on_double

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
    from jobs.placers.nomad import worker_job

    for driver in ("docker", "raw_exec"):
        job = worker_job(settings.replace(nomad_worker_driver=driver), "T", "a1", 2)
        assert list(validator.iter_errors(job)) == [], job
        assert job["Update"] == {"MaxParallel": 0}, "no deployment ever blocks a scale"
        text = json.dumps(job)
        for secret in (settings.redis_password, settings.s3_secret_key, settings.vault_token):
            assert not secret.reveal() or secret.reveal() not in text, "settings go by variable"
    broken = {**execution_job(_spec(), settings), "Priority": "high"}
    assert list(validator.iter_errors(broken)), "the schema check can fail"


def test_a_queue_is_a_node_pool(settings: Settings):
    from jobs.placers.nomad import worker_job

    pools = settings.replace(nomad_queue_pools="gpu=gpu-nodes", nomad_node_pool="general")
    assert execution_job(_spec(), pools)["NodePool"] == "general"
    assert execution_job(_spec(queue="gpu"), pools)["NodePool"] == "gpu-nodes"
    assert execution_job(_spec(queue="big"), pools)["NodePool"] == "big"
    assert worker_job(pools, "T", "a1", 1, "gpu")["NodePool"] == "gpu-nodes"


def test_worker_job_ids_are_one_per_actor():
    from jobs.placers.nomad import worker_job_id

    assert worker_job_id("DEV", "a1") == "abaco-workers-DEV-a1"
    assert worker_job_id("a.b", "x") != worker_job_id("a_b", "x")


def test_no_environment_value_is_in_the_job(settings: Settings):
    job = json.dumps(execution_job(_spec(), settings))
    assert "s3cr3t-value" not in job and "hello" not in job
    assert variable_path("abaco-e1") == "nomad/jobs/abaco-e1/run/actor", \
        "the task's own path: its workload identity reads it with no policy"
    tasks = {t["Name"]: t for t in json.loads(job)["TaskGroups"][0]["Tasks"]}
    task = tasks["actor"]
    assert task["Templates"][0]["Envvars"] is True and "Env" not in task
    assert tasks["relay"]["Lifecycle"] == {"Hook": "prestart", "Sidecar": True}
    assert "../alloc/_abaco_results.sock:/_abaco_results.sock" in task["Config"]["volumes"]
    group = json.loads(job)["TaskGroups"][0]
    assert group["RestartPolicy"]["Attempts"] == 0 and \
        group["ReschedulePolicy"] == {"Attempts": 0, "Unlimited": False}


@pytest.fixture
def double(images: list[str], relay_image: str) -> Any:
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
    runner = NomadRunner(on_double(settings, double))
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
    # Register (3), the three variables (3), one blocking read per change of the allocation
    # (pending, relay started, actor started, actor ended, sidecar stopped: about 7), the
    # final read, and the purge (4): never a polling loop.
    assert len(counted) <= 20, counted
    reads = [r for r in counted if r.endswith("/allocations")]
    assert len(reads) <= 8, reads
    assert variable_path(handle) not in double.state.variables, "removed with the job"
    actor_var = f"PUT /v1/var/{variable_path(handle)}"
    relay_logs = next(i for i, r in enumerate(double.state.requests)
                      if r.startswith("GET /v1/client/fs/logs/"))
    assert double.state.requests.index(actor_var) > relay_logs, \
        "the actor's environment (which holds its start) is written once the relay is ready"


def test_a_run_whose_starter_died_before_the_relay_was_ready_still_runs(double: Any,
                                                                        settings: Settings):
    """The actor's environment is staged at the job's path: the worker that adopts the
    run hands it over when the relay says ready, though it never had it."""
    starter = NomadRunner(on_double(settings, double))
    handle = starter.start(_spec())
    starter.pending.clear()  # it died: nothing in memory, nobody followed the relay
    adopter = NomadRunner(on_double(settings, double))
    logs: list[bytes] = []
    result = adopter.wait(handle, logs.append, time.time() + 60)
    adopter.stop(handle, remove=True)
    assert result.exit_code == 0 and b"SECRET_ONE=s3cr3t-value" in b"".join(logs)
    assert not [p for p in double.state.variables if handle in p], "all removed with the job"


def test_a_run_nomad_never_places_ends_at_its_deadline(double: Any, settings: Settings):
    double.state._reconcile = lambda job, group: None  # a blocked evaluation: no capacity
    runner = NomadRunner(on_double(settings, double))
    handle = runner.start(_spec())
    begun = time.monotonic()
    result = runner.wait(handle, lambda _c: None, time.time() + 1)
    assert time.monotonic() - begun < 15, "the deadline ends the wait"
    assert "maximum run time" in (result.killed_reason or "") and result.exit_code is None
    runner.stop(handle, remove=True)


def test_a_nomad_outage_during_a_run_is_ridden_out(double: Any, settings: Settings):
    runner = NomadRunner(on_double(settings, double, backoff_first_s=0.05))
    handle = runner.start(_spec(image="abaco-test-sleep", env={"SLEEP": "1"}))
    for _ in range(2):
        double.state.faults.append(("GET", f"/v1/job/{handle}/allocations", 500,
                                    "No cluster leader"))
    result = runner.wait(handle, lambda _c: None, time.time() + 60)
    runner.stop(handle, remove=True)
    assert result.exit_code == 0 and not double.state.faults, "both failures were met"


def test_a_relay_that_cannot_start_makes_the_execution_an_error_with_its_reason(
        double: Any, settings: Settings):
    from jobs.run_record import result_fields

    runner = NomadRunner(on_double(settings, double,
                                   nomad_relay_image="abaco-test-does-not-exist:1"))
    handle = runner.start(_spec())
    result = runner.wait(handle, lambda _c: None, time.time() + 60)
    runner.stop(handle, remove=True)
    assert result.exit_code is None and any(n.startswith("results relay:")
                                            for n in result.notes), result.notes
    fields = result_fields({"message_received_time": "2026-01-01T00:00:00.000000Z"}, result)
    assert fields["status"] == "ERROR" and "results relay" in fields["status_message"]


def test_a_refused_job_leaves_no_environment_in_nomad(double: Any, settings: Settings):
    from jobs.runners.base import StartFailed

    double.state.faults.append(("POST", "/v1/jobs", 500,
                                "1 error occurred:\n\t* Task group run validation failed\n\n"))
    with pytest.raises(StartFailed) as refused:
        NomadRunner(on_double(settings, double)).start(_spec())
    assert refused.value.transient is False
    assert double.state.variables == {}, "the secrets went with the refusal"


def test_a_binary_message_too_big_for_a_variable_is_refused_at_start(double: Any,
                                                                     settings: Settings):
    from jobs.runners.base import BytesPayload, StartFailed
    from jobs.runners.nomad import MAX_PAYLOAD_BYTES

    runner = NomadRunner(on_double(settings, double))
    with pytest.raises(StartFailed) as refused:
        runner.start(_spec(payload=BytesPayload(b"x" * (MAX_PAYLOAD_BYTES + 1))))
    assert refused.value.transient is False and "Nomad Variable" in refused.value.message
    assert not double.state.jobs


def test_scaling_answers_as_nomad_does(double: Any):
    base = double.address
    scale = f"{base}/v1/job/%s/scale"
    body = {"Count": 1, "Target": {"Group": "g"}, "Message": "m"}
    missing = requests.post(scale % "nope", json=body, timeout=5)
    assert missing.status_code == 404 and missing.text == 'job "nope" not found'
    job = {"ID": "svc", "Type": "service", "TaskGroups": [{"Name": "g", "Count": 0, "Tasks": [
        {"Name": "t", "Driver": "docker", "Config": {"image": "abaco-test-sleep"}}]}]}
    assert requests.post(f"{base}/v1/jobs", json={"Job": job}, timeout=5).ok
    unknown = requests.post(scale % "svc", json={**body, "Target": {"Group": "x"}}, timeout=5)
    assert unknown.status_code == 400 and "does not exist in job" in unknown.text
    blocked = requests.post(scale % "svc", json=body, timeout=5)
    assert blocked.status_code == 400 and blocked.text == \
        "job scaling blocked due to active deployment", "no Update.MaxParallel = 0"
    free = {**job, "ID": "svc2", "Update": {"MaxParallel": 0}}
    assert requests.post(f"{base}/v1/jobs", json={"Job": free}, timeout=5).ok
    for count in (2, 1, 0):
        reply = requests.post(scale % "svc2", json={**body, "Count": count}, timeout=5)
        assert reply.status_code == 200 and reply.json()["EvalID"], reply.text
        live = [a for a in requests.get(f"{base}/v1/job/svc2/allocations", timeout=5).json()
                if a["DesiredStatus"] == "run"]
        assert len(live) == count


def test_a_message_runs_end_to_end_through_nomad(double: Any, settings: Settings):
    """The real scheduler and worker (in threads), the Nomad runner, the double."""
    from tests.harness import running_harness
    from tests.waits import wait_until

    nomad = on_double(settings, double)
    with running_harness(nomad, NomadRunner(nomad)) as harness:
        actor = harness.actor(image="abaco-test-echo")
        assert actor["status"] == "READY"
        eid = harness.send(actor["id"], "through nomad")
        harness.scheduler.reconcile("T", actor["id"])
        record = wait_until(lambda: (r := harness.execution(actor["id"], eid))["status"]
                            == "COMPLETE" and r, 60, "the execution through nomad")
        assert record["exit_code"] == 0 and record["handle"] == f"abaco-{eid}"
        # the record is final before the worker copies the logs to S3 (the reply need
        # not wait for S3): wait for the copy
        logs = wait_until(lambda: _stored_logs(harness, actor["id"], eid), 30, "the logs in S3")
        assert "Contents of MSG: through nomad" in logs


def _stored_logs(harness: Any, actor_id: str, eid: str) -> str:
    from jobs.errors import NotFound

    try:
        return harness.platform.logs.get_logs("T", actor_id, eid).decode()
    except NotFound:
        return ""


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
