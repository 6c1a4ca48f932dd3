"""One contract, every runner: the shipped FakeRunner and DockerRunner on the real engine
(NomadRunner joins here). Docker-only behaviour is at the end."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from jobs.runners.base import BytesPayload, RunSpec, StartFailed
from jobs.runners.fake import FakeRun, FakeRunner
from jobs.settings import Settings
from tests.waits import wait_until


def _like_the_test_images(spec: RunSpec) -> FakeRun:
    """The fake plays what images/build.py's images do."""
    env = spec.env
    if spec.image == "abaco-test-fail":
        code = int(env.get("EXIT_CODE", "3"))
        return FakeRun(exit_code=code, logs=f"about to fail with {code}\n".encode())
    if spec.image == "abaco-test-sleep":
        return FakeRun(duration_s=float(env.get("SLEEP", "60")), logs=b"sleeping\n")
    if spec.image == "abaco-test-does-not-exist:1":
        return FakeRun(start_error="image abaco-test-does-not-exist:1 not found",
                       start_error_transient=False, start_error_image_missing=True)
    return FakeRun(logs=f"Contents of MSG: {env.get('MSG', '')}\n".encode())


@pytest.fixture(params=["fake", "docker", "nomad"])
def runner(request: pytest.FixtureRequest, settings: Settings) -> Iterator[Any]:
    if request.param == "fake":
        yield FakeRunner(_like_the_test_images,
                         images={"abaco-test-echo", "abaco-test-fail", "abaco-test-sleep"})
        return
    request.getfixturevalue("images")
    if request.param == "nomad":
        request.getfixturevalue("relay_image")
        from jobs.runners.nomad import NomadRunner
        from tests.nomad_double import NomadDouble, on_double

        with NomadDouble() as double:
            yield NomadRunner(on_double(settings, double))
        return
    from jobs.runners.docker import DockerRunner

    yield DockerRunner(settings)


def _spec(image: str, eid: str | None = None, **extra: Any) -> RunSpec:
    fields: dict[str, Any] = {
        "execution_id": eid or f"e{time.monotonic_ns()}", "actor_id": "a1", "tenant": "T",
        "worker_id": "w1", "image": image, "env": {"MSG": "hello"}, "network": "none",
        "max_run_time_s": 30.0, "pids_limit": 64}
    fields.update(extra)
    return RunSpec(**fields)


def _run(runner: Any, spec: RunSpec, deadline_s: float = 60) -> tuple[Any, str]:
    chunks: list[bytes] = []
    handle = runner.start(spec)
    result = runner.wait(handle, chunks.append, time.time() + deadline_s)
    runner.stop(handle, remove=True)
    return result, b"".join(chunks).decode()


def test_a_run_reports_exit_code_times_and_logs(runner: Any):
    result, logs = _run(runner, _spec("abaco-test-echo"))
    assert result.exit_code == 0 and not result.gone and result.start_time
    assert "Contents of MSG: hello" in logs


def test_a_non_zero_exit_is_a_result_not_an_error(runner: Any):
    result, logs = _run(runner, _spec("abaco-test-fail", env={"EXIT_CODE": "7"}))
    assert result.exit_code == 7 and "about to fail with 7" in logs


def test_start_is_idempotent_per_execution(runner: Any):
    spec = _spec("abaco-test-sleep", env={"SLEEP": "2"})
    first = runner.start(spec)
    assert runner.start(spec) == first  # a retried start finds the run, starts none
    result = runner.wait(first, lambda _c: None, time.time() + 60)
    assert result.exit_code == 0
    assert runner.start(spec) == first  # even once it has ended
    runner.stop(first, remove=True)


def test_a_run_outlives_its_waiter_and_a_new_waiter_gets_the_whole_log(runner: Any):
    spec = _spec("abaco-test-sleep", env={"SLEEP": "1"})
    handle = runner.start(spec)
    seen: list[bytes] = []
    result = runner.wait(handle, seen.append, time.time() + 60)  # a second waiter, later
    assert result.exit_code == 0 and b"sleeping" in b"".join(seen)
    runner.stop(handle, remove=True)


def test_the_deadline_kills_the_run_and_says_why(runner: Any):
    spec = _spec("abaco-test-sleep", env={"SLEEP": "30"}, max_run_time_s=1.0)
    result, _ = _run(runner, spec, deadline_s=1.0)
    assert result.exit_code != 0 and "maximum run time" in (result.killed_reason or "")


def test_stop_kills_and_a_removed_run_is_gone(runner: Any):
    spec = _spec("abaco-test-sleep", env={"SLEEP": "60"})
    handle = runner.start(spec)
    box: list[Any] = []
    waiter = threading.Thread(target=lambda: box.append(
        runner.wait(handle, lambda _c: None, time.time() + 60)))
    waiter.start()
    runner.stop(handle)
    waiter.join(30)
    assert box and box[0].exit_code != 0 and not box[0].gone
    runner.stop(handle, remove=True)
    assert runner.wait(handle, lambda _c: None, time.time() + 5).gone


def test_images_are_checked_and_a_missing_one_is_named(runner: Any):
    if type(runner).__name__ == "NomadRunner":
        pytest.skip("Nomad has no API to check an image before a run; its node pulls it")
    assert runner.check_image("abaco-test-echo").ok
    check = runner.check_image("abaco-test-does-not-exist:1")
    assert not check.ok and not check.transient and "abaco-test-does-not-exist:1" in check.reason
    with pytest.raises(StartFailed) as failed:
        runner.start(_spec("abaco-test-does-not-exist:1"))
    assert failed.value.transient is False and failed.value.image_missing is True


def _engine_only(runner: Any) -> None:
    if isinstance(runner, FakeRunner):
        pytest.skip("the fake plays no container contract")


def test_a_binary_message_is_a_file_at_the_abaco_path(runner: Any):
    _engine_only(runner)
    result, logs = _run(runner, _spec("abaco-test-echo", payload=BytesPayload(b"\x00" * 1234)))
    assert result.exit_code == 0 and "binary bytes: 1234" in logs


def test_results_reach_the_workers_socket_in_order(runner: Any, tmp_path: Any,
                                                   request: pytest.FixtureRequest):
    """The Abaco SDK inside the run writes to /_abaco_results.sock; the worker's socket
    (on its host) gets each result, in order, whatever engine ran it."""
    _engine_only(runner)
    image = request.getfixturevalue("python_image")
    from jobs.results import ResultsSocket

    got: list[bytes] = []
    socket = ResultsSocket(tmp_path / "r.sock", lambda data, _cut: got.append(data), 4096)
    path = socket.open()
    try:
        eid = f"e{time.monotonic_ns()}"
        result, logs = _run(runner, _spec(image, eid, results_socket=path, env={
            "MSG": "hi", "_abaco_actor_id": "a1", "_abaco_execution_id": eid}))
    finally:
        socket.close()
    assert result.exit_code == 0, logs
    assert got[0] == b"bytes for hi" and len(got) == 2, got


# -- Docker only ---------------------------------------------------------------------
@pytest.fixture
def docker_runner(settings: Settings, images: list[str]) -> Any:
    from jobs.runners.docker import DockerRunner

    return DockerRunner(settings)


def test_docker_memory_limit_ends_oom_killed(docker_runner: Any):
    result, _ = _run(docker_runner, _spec("abaco-test-memhog", env={"MB": "200"},
                                          memory_bytes=32 * 1024 * 1024))
    assert result.oom_killed is True and result.raw["OOMKilled"] is True


def test_docker_stats_of_a_container_that_outlives_a_sample(docker_runner: Any):
    result, _ = _run(docker_runner, _spec("abaco-test-memhog", env={"MB": "24", "SLEEP": "2.5"}))
    assert result.exit_code == 0
    assert result.cpu_ns > 0 and result.mem_peak_bytes > 1024 * 1024


def test_docker_removes_the_container_on_stop_remove(docker_runner: Any):
    spec = _spec("abaco-test-echo")
    _run(docker_runner, spec)
    wait_until(lambda: not docker_runner.client.containers.list(
        all=True, filters={"label": f"abaco.execution={spec.execution_id}"}), 20,
        "the container removed")


def test_docker_says_when_the_engine_answered_and_still_refused_a_run(docker_runner: Any):
    """A 5xx from an engine that answers a ping may be this run itself (a NUL in the
    environment): the worker tries it a bounded number of times, not forever."""
    with pytest.raises(StartFailed) as failed:
        docker_runner.start(_spec("abaco-test-echo", env={"MSG": "a\x00b"}))
    assert failed.value.transient is True and failed.value.engine_answered is True
