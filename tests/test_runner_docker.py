"""DockerRunner against the real Docker engine with locally built images."""

from __future__ import annotations

import threading

import pytest

from jobs.runners.base import RunSpec
from jobs.runners.docker import LABEL_EXECUTION, DockerRunner
from jobs.settings import Settings
from tests.waits import wait_until


@pytest.fixture
def runner(settings: Settings, images: list[str]) -> DockerRunner:
    return DockerRunner(settings)


def _spec(image: str, eid: str = "e1", **extra) -> RunSpec:
    fields = {"execution_id": eid, "actor_id": "a1", "tenant": "T", "worker_id": "w1",
              "image": image, "env": {"MSG": "hello"}, "network": "none",
              "max_run_time_s": 30.0, "pids_limit": 64}
    fields.update(extra)
    return RunSpec(**fields)


def _run(runner: DockerRunner, spec: RunSpec):
    started: list[str] = []
    chunks: list[bytes] = []
    result = runner.run(spec, started.append, chunks.append)
    return result, started, b"".join(chunks).decode()


def test_echo_runs_once_and_reports(runner: DockerRunner):
    result, started, logs = _run(runner, _spec("abaco-test-echo"))
    assert result.error is None and result.exit_code == 0
    assert len(started) == 1 and result.start_time
    assert "Contents of MSG: hello" in logs
    assert result.final_state["Status"] == "exited" and result.final_state["ExitCode"] == 0
    assert 0 <= result.runtime < 10
    wait_until(lambda: not runner.client.containers.list(
        all=True, filters={"label": f"{LABEL_EXECUTION}=e1"}), 20, "the container removed")


def test_non_zero_exit_is_reported_not_an_error(runner: DockerRunner):
    result, _, logs = _run(runner, _spec("abaco-test-fail", env={"EXIT_CODE": "7"}))
    assert result.error is None and result.exit_code == 7
    assert "about to fail with 7" in logs


def test_binary_message_is_readable_at_the_abaco_path(runner: DockerRunner):
    result, _, logs = _run(runner, _spec("abaco-test-echo", binary=b"\x00" * 1234))
    assert result.exit_code == 0
    assert "binary bytes: 1234" in logs


def test_max_run_time_kills_and_says_why(runner: DockerRunner):
    result, _, _ = _run(runner, _spec("abaco-test-sleep", env={"SLEEP": "30"},
                                      max_run_time_s=1.0))
    assert result.exit_code != 0
    assert any("maximum run time" in note for note in result.notes)


def test_memory_limit_ends_oom_killed(runner: DockerRunner):
    result, _, _ = _run(runner, _spec("abaco-test-memhog", env={"MB": "200"}, mem_limit="32m"))
    assert result.final_state["OOMKilled"] is True


def test_stats_of_a_container_that_outlives_a_stats_sample(runner: DockerRunner):
    result, _, _ = _run(runner, _spec("abaco-test-memhog", env={"MB": "24", "SLEEP": "2.5"}))
    assert result.exit_code == 0
    assert result.cpu > 0 and result.mem_peak > 1024 * 1024


def test_a_missing_image_is_named(runner: DockerRunner):
    ok, reason = runner.image_available("abaco-test-does-not-exist:1")
    assert not ok and "abaco-test-does-not-exist:1" in reason
    assert runner.image_available("abaco-test-echo") == (True, "")
    result, started, _ = _run(runner, _spec("abaco-test-does-not-exist:1"))
    assert result.error and "create" in result.error and not started


def test_kill_execution_finds_the_container_by_label(runner: DockerRunner):
    spec = _spec("abaco-test-sleep", eid="e-kill", env={"SLEEP": "60"})
    outcome: list = []
    thread = threading.Thread(target=lambda: outcome.append(_run(runner, spec)))
    thread.start()
    wait_until(lambda: runner.client.containers.list(
        filters={"label": f"{LABEL_EXECUTION}=e-kill"}), 20, "the container to run")
    assert runner.kill_execution("e-kill") is True
    thread.join(20)
    assert outcome and outcome[0][0].exit_code != 0
