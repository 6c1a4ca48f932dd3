"""Prewarmed containers: a worker's next container is started before its message.

Real Docker, Redis, S3 and OpenBao; the worker in-process, driven step by step.
What must hold: every execution still gets a container of its own, made for it;
each sees its own message's environment, the same a plain run sees; a run is
timed from its message, not from its container's start; an update, a cancel and
a worker that leaves or dies leave nothing behind.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from typing import Any

import pytest

from jobs.runners import shim
from jobs.runners.docker import DockerRunner
from jobs.runners.prewarm import LABEL_PREWARM
from jobs.service import Platform
from jobs.timeutil import parse_iso
from jobs.worker import Worker
from scheduler.loop import Scheduler
from tests.docker_events import runs_begun
from tests.test_worker_scheduler import (
    CALLER,
    RecordingPlacer,
    _ready_actor,
    _send,
    _serve_one,
    _worker,
)
from tests.waits import wait_until


def _prewarmed(runner: DockerRunner, actor_id: str, state: str = "running") -> list[dict[str, Any]]:
    """The actor's prewarmed containers still waiting for a message, in ``state``."""
    return [c for c in runner.client.api.containers(all=True, filters={
        "label": [LABEL_PREWARM, f"abaco.actor={actor_id}"]}) if c["State"] == state
        and c["Names"][0].startswith("/abaco-prewarm-")]


def _ready_worker(platform: Platform, runner: DockerRunner, actor_id: str,
                  wid: str = "w1") -> Worker:
    worker = _worker(platform, runner, actor_id, wid)
    _prepare(worker, runner, actor_id)
    return worker


def _prepare(worker: Worker, runner: DockerRunner, actor_id: str) -> str:
    """The worker's next container, up; its id."""
    worker._prepare_next()
    ready = wait_until(lambda: _prewarmed(runner, actor_id), 60, "a prewarmed container up")
    return str(ready[0]["Id"])


def _env(logs: str) -> dict[str, str]:
    """The echo actor's ``env`` output (one-line values only)."""
    pairs = (line.partition("=") for line in logs.splitlines() if "=" in line)
    return {name: value for name, sep, value in pairs if sep and name.isidentifier()}


def test_every_message_gets_a_fresh_container_with_its_own_environment(
        platform: Platform, runner: DockerRunner):
    actor = _ready_actor(platform)
    worker = _ready_worker(platform, runner, actor["id"])
    since, eids, hosts = time.time(), [], []
    for i in range(3):
        if i:
            _prepare(worker, runner, actor["id"])
        eid = _send(platform, actor["id"], f"message {i}", color=f"c{i}")
        _serve_one(worker)
        record = platform.store.get_execution("T", actor["id"], eid)
        assert record["status"] == "COMPLETE" and record["exit_code"] == 0, record
        assert "@" in record["handle"], "delivered to a prewarmed container"
        logs = platform.get_logs(CALLER, actor["id"], eid)
        env = _env(logs)
        assert f"Contents of MSG: message {i}" in logs
        assert env["color"] == f"c{i}" and env["_abaco_execution_id"] == eid
        assert record["handle"].startswith(env["HOSTNAME"]), "ran in its own container"
        eids.append(eid)
        hosts.append(env["HOSTNAME"])
    assert len(set(hosts)) == 3, "a fresh container for every execution"
    assert dict(runs_begun(runner.client, actor["id"], since)) == {e: 1 for e in eids}


def test_a_prewarmed_run_sees_what_a_plain_run_sees(platform: Platform, runner: DockerRunner):
    """Same image, same message: the same variables, none of the shim's own."""
    seen = {}
    for way, hints in (("prewarmed", []), ("plain", ["noprewarm"])):
        actor = _ready_actor(platform, hints=hints,
                             defaultEnvironment={"QUOTED": "it's $HOME `x` \\n"})
        worker = _worker(platform, runner, actor["id"])
        if way == "prewarmed":
            _prepare(worker, runner, actor["id"])
        else:
            worker._prepare_next()  # the hint: nothing is made ahead
            assert not _prewarmed(runner, actor["id"])
        eid = _send(platform, actor["id"], "same", color="red")
        _serve_one(worker)
        record = platform.store.get_execution("T", actor["id"], eid)
        assert ("@" in record["handle"]) is (way == "prewarmed"), record["handle"]
        seen[way] = _env(platform.get_logs(CALLER, actor["id"], eid))
    prewarmed, plain = seen["prewarmed"], seen["plain"]
    assert prewarmed["QUOTED"] == plain["QUOTED"] == "it's $HOME `x` \\n"
    per_run = {"HOSTNAME", "_abaco_execution_id", "_abaco_actor_id", "_abaco_actor_dbid",
               "_abaco_access_token"}
    assert set(prewarmed) == set(plain), "no variable more or less than a plain run"
    assert {k: v for k, v in prewarmed.items() if k not in per_run} == \
        {k: v for k, v in plain.items() if k not in per_run}


ODD_IMAGES = {
    "abaco-test-missing-cmd": 'FROM abaco-test-echo\nENTRYPOINT ["notthere"]\n',
    "abaco-test-shell-env": "FROM abaco-test-echo\nENV SHLVL=5 PWD=/custompwd\n",
}


@pytest.fixture(scope="module")
def odd_images(images: list[str]) -> list[str]:
    """Images built on the echo image: a command that does not exist, and an image that
    sets the variables busybox's shell sets itself."""
    import docker

    from images.build import build_context

    client = docker.from_env(version="auto")
    for tag, dockerfile in ODD_IMAGES.items():
        client.images.build(fileobj=build_context({"Dockerfile": dockerfile.encode()}),
                            custom_context=True, tag=tag, rm=True)
    return list(ODD_IMAGES)


def _one_run(platform: Platform, runner: DockerRunner, hints: list[str],
             **fields: Any) -> dict[str, Any]:
    actor = _ready_actor(platform, hints=hints, **fields)
    worker = _worker(platform, runner, actor["id"])
    if not hints:
        _prepare(worker, runner, actor["id"])
    eid = _send(platform, actor["id"], "odd")
    _serve_one(worker)
    return {**platform.store.get_execution("T", actor["id"], eid),
            "logs": platform.get_logs(CALLER, actor["id"], eid)}


def test_a_command_that_cannot_start_is_an_error_either_way(
        platform: Platform, runner: DockerRunner, odd_images: list[str]):
    runs = [_one_run(platform, runner, hints, image="abaco-test-missing-cmd")
            for hints in ([], ["noprewarm"])]
    for run in runs:
        assert run["status"] == "ERROR" and run.get("exit_code") is None, run
        assert "executable file not found" in run["status_message"], run["status_message"]
    assert "@" in runs[0]["handle"] and "/.abaco-shim" not in runs[0]["logs"]


def test_the_images_own_shell_variables_are_kept(
        platform: Platform, runner: DockerRunner, odd_images: list[str]):
    prewarmed, plain = (_env(_one_run(platform, runner, hints, image="abaco-test-shell-env")[
        "logs"]) for hints in ([], ["noprewarm"]))
    for name in ("SHLVL", "PWD"):
        assert prewarmed[name] == plain[name], name


def test_a_run_is_timed_from_its_message_not_its_container(platform: Platform,
                                                           runner: DockerRunner):
    actor = _ready_actor(platform)
    worker = _ready_worker(platform, runner, actor["id"])
    container_started = parse_iso(runner.client.api.inspect_container(
        _prewarmed(runner, actor["id"])[0]["Id"])["State"]["StartedAt"][:26] + "Z")
    eid = _send(platform, actor["id"], "timed")
    _serve_one(worker)
    record = platform.store.get_execution("T", actor["id"], eid)
    received, started = (parse_iso(record[k]) for k in ("message_received_time", "start_time"))
    finished = parse_iso(record["finish_time"])
    assert container_started < received <= started <= finished
    assert record["runtime"] <= (finished - received).total_seconds() + 0.01
    assert record["queue_time"] >= 0


def test_a_binary_message_reaches_a_prewarmed_run(platform: Platform,
                                                            runner: DockerRunner):
    actor = _ready_actor(platform)
    worker = _ready_worker(platform, runner, actor["id"])
    from jobs.service import Message

    eid = str(platform.send_message(CALLER, actor["id"], Message(
        "", "application/octet-stream", {}, b"\x00\x01" * 300))["execution_id"])
    _serve_one(worker)
    record = platform.store.get_execution("T", actor["id"], eid)
    assert "@" in record["handle"] and record["exit_code"] == 0
    assert "binary bytes: 600" in platform.get_logs(CALLER, actor["id"], eid)


def test_an_update_discards_the_prewarmed_container(platform: Platform, runner: DockerRunner):
    actor = _ready_actor(platform)
    worker = _ready_worker(platform, runner, actor["id"])
    old = _prewarmed(runner, actor["id"])[0]["Id"]
    serving = threading.Thread(target=worker.run)
    serving.start()
    platform.update_actor(CALLER, actor["id"], {"image": "abaco-test-fail"})
    serving.join(60)
    assert not serving.is_alive(), "the worker of the old revision left"
    assert old not in [c["Id"] for c in runner.client.api.containers(all=True)], \
        "its prewarmed container went with it"
    platform.store.update_actor("T", actor["id"], {"status": "READY"})
    worker = _ready_worker(platform, runner, actor["id"], "w2")
    eid = _send(platform, actor["id"], "after the update")
    _serve_one(worker)
    record = platform.store.get_execution("T", actor["id"], eid)
    assert record["exit_code"] == 3 and "@" in record["handle"], "the new image ran"
    worker._leave()
    assert not _prewarmed(runner, actor["id"]), "a worker that leaves takes its container"


def test_a_message_cancelled_before_delivery_leaves_the_container_for_the_next(
        platform: Platform, runner: DockerRunner):
    actor = _ready_actor(platform)
    worker = _ready_worker(platform, runner, actor["id"])
    waiting = _prewarmed(runner, actor["id"])[0]["Id"]
    cancelled = _send(platform, actor["id"], "never runs")
    platform.cancel_execution(CALLER, actor["id"], cancelled)
    record = platform.store.get_execution("T", actor["id"], cancelled)
    assert record["status"] == "COMPLETE" and not record.get("start_time")
    eid = _send(platform, actor["id"], "runs")
    for _ in range(3):  # the cancelled entry may still be read, and is passed over
        entry = worker._next_entry()
        assert entry is not None
        worker.handle(*entry)
        if entry[1] == eid:
            break
    record = platform.store.get_execution("T", actor["id"], eid)
    assert record["status"] == "COMPLETE" and record["handle"].startswith(waiting)


def test_a_cancel_after_delivery_kills_the_run(platform: Platform, runner: DockerRunner):
    actor = _ready_actor(platform)
    worker = _ready_worker(platform, runner, actor["id"])
    eid = _send(platform, actor["id"], "long", SLEEP="60")
    serving = threading.Thread(target=worker.run)  # its control loop hears the cancel
    serving.start()
    try:
        wait_until(lambda: platform.store.get_execution("T", actor["id"], eid)["status"] ==
                   "RUNNING", 30, "RUNNING")
        platform.cancel_execution(CALLER, actor["id"], eid)
        record = wait_until(lambda: (r := platform.store.get_execution(
            "T", actor["id"], eid))["status"] == "COMPLETE" and r, 60, "COMPLETE")
    finally:
        worker.stop()
        serving.join(60)
    assert "cancelled" in record["status_message"] and "@" in record["handle"]
    assert record["exit_code"] == 137 and record["runtime"] < 30


def test_a_dead_workers_prewarmed_container_ends_and_is_pruned(platform: Platform,
                                                               runner: DockerRunner):
    actor = _ready_actor(platform)
    _ready_worker(platform, runner, actor["id"])
    prepared = runner._prewarmer.prepared["w1"] if runner._prewarmer else None
    assert prepared is not None
    # what the kernel does to the worker's connection when its process dies
    prepared.stdin._sock.shutdown(socket.SHUT_RDWR)
    exited = wait_until(lambda: _prewarmed(runner, actor["id"], "exited"), 30,
                        "the abandoned container exited")
    info = runner.client.api.inspect_container(exited[0]["Id"])
    assert info["State"]["ExitCode"] == shim.UNDELIVERED
    assert b"the actor did not run" in runner.client.api.logs(exited[0]["Id"])
    successor = DockerRunner(platform.settings)  # the next worker process of the actor
    _ready_worker(platform, successor, actor["id"], "w2")
    assert not _prewarmed(runner, actor["id"], "exited"), "pruned by the next worker"


def test_the_scheduler_prunes_what_dead_workers_left(platform: Platform, runner: DockerRunner):
    """Of any actor, also one no worker will serve again (deleted): once a sweep; and
    only this platform's (another Redis on the same engine prunes its own)."""
    from jobs.runners.base import LABEL_PLATFORM

    actor = _ready_actor(platform)
    _ready_worker(platform, runner, actor["id"])
    assert runner._prewarmer is not None
    prepared = runner._prewarmer.prepared["w1"]
    assert prepared.container is not None
    image = prepared.container.attrs["Config"]["Image"]
    prepared.stdin._sock.shutdown(socket.SHUT_RDWR)
    wait_until(lambda: _prewarmed(runner, actor["id"], "exited"), 30, "exited")
    foreign = runner.client.containers.create(
        image, name=f"abaco-prewarm-T-{actor['id']}-another", network_mode="none",
        labels={LABEL_PREWARM: "1", "abaco.actor": actor["id"],
                LABEL_PLATFORM: "another-platform"})
    try:
        foreign.start()
        wait_until(lambda: len(_prewarmed(runner, actor["id"], "exited")) == 2, 30,
                   "the other platform's exited too")
        platform.delete_actor(CALLER, actor["id"])
        scheduler = Scheduler(platform.settings, platform.store,
                              DockerRunner(platform.settings), RecordingPlacer(), platform.logs)
        scheduler._prune_prepared_runs()
        assert [c["Id"] for c in _prewarmed(runner, actor["id"], "exited")] == [foreign.id]
    finally:
        foreign.remove(force=True)
    assert scheduler.next_prune > time.monotonic() + platform.settings.scheduler_sweep_s - 5


def test_the_scheduler_removes_runs_no_worker_will_start(platform: Platform,
                                                         runner: DockerRunner):
    """Containers made for runs whose worker died before starting them: once the
    execution is over (cancelled) or gone (its actor deleted), a sweep removes them
    after the grace; one whose execution still waits stays for its next worker, and
    another platform's (another Redis, the same engine) are not this one's to touch."""
    import dataclasses

    from jobs.runners.base import LABEL_PLATFORM

    kept_actor, gone_actor = _ready_actor(platform), _ready_actor(platform)
    worker = _worker(platform, runner, kept_actor["id"])
    other = _worker(platform, runner, gone_actor["id"], "w2")
    waiting, cancelled, foreign = (_send(platform, kept_actor["id"], m)
                                   for m in ("wait", "cancel", "foreign"))
    gone = _send(platform, gone_actor["id"], "gone")

    def made_for(w: Worker, actor_id: str, eid: str, label: str | None = None) -> str:
        spec = w._spec(platform.store.get_execution("T", actor_id, eid))
        if label is not None:
            spec = dataclasses.replace(spec, labels={**spec.labels, LABEL_PLATFORM: label})
        return str(runner._create_or_find(spec).id)

    made = {waiting: made_for(worker, kept_actor["id"], waiting),
            cancelled: made_for(worker, kept_actor["id"], cancelled),
            gone: made_for(other, gone_actor["id"], gone),
            foreign: made_for(worker, kept_actor["id"], foreign, "another-platform")}
    platform.cancel_execution(CALLER, kept_actor["id"], cancelled)
    platform.cancel_execution(CALLER, kept_actor["id"], foreign)
    platform.delete_actor(CALLER, gone_actor["id"])

    def left() -> set[str]:
        on_engine = {c["Id"] for c in runner.client.api.containers(all=True)}
        return {eid for eid, cid in made.items() if cid in on_engine}

    patient = Scheduler(platform.settings, platform.store, DockerRunner(platform.settings),
                        RecordingPlacer(), platform.logs)
    patient._remove_idle_runs()
    assert left() == set(made), "within the grace, nothing goes"
    prompt = Scheduler(platform.settings.replace(docker_timeout_s=0.001), platform.store,
                       DockerRunner(platform.settings), RecordingPlacer(), platform.logs)
    prompt._remove_idle_runs()
    assert left() == {waiting, foreign}, "the waiting run and another platform's stay"
    for eid in (waiting, foreign):
        runner.stop(made[eid], remove=True)


def test_an_idle_run_is_read_from_its_name_whatever_the_tenant():
    from datetime import UTC, datetime, timedelta

    from jobs.runners.docker import _idle_run

    class Container:  # the fields the engine's inspect gives
        def __init__(self, name: str, labels: dict[str, str], status: str) -> None:
            long_ago = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
            self.name, self.labels, self.status, self.id = name, labels, status, "cid"
            self.attrs = {"Created": long_ago, "State": {"FinishedAt": long_ago}}

    plain = _idle_run(Container("abaco-my-lab-A1-E1", {"abaco.actor": "A1",
                                                       "abaco.execution": "E1"}, "created"), 60)
    assert plain is not None and (plain.tenant, plain.actor_id, plain.execution_id) == \
        ("my-lab", "A1", "E1")
    delivered = _idle_run(Container("abaco-T-A1-E2", {"abaco.actor": "A1",
                                                      LABEL_PREWARM: "1"}, "exited"), 60)
    assert delivered is not None and delivered.execution_id == "E2"
    for name, labels in [("abaco-prewarm-T-A1-0123abcd", {"abaco.actor": "A1"}),
                         ("abaco-T-A2-E1", {"abaco.actor": "A1"}),
                         ("abaco-T-A1-E1", {"abaco.actor": "A1", "abaco.execution": "E9"}),
                         ("other-T-A1-E1", {"abaco.actor": "A1"})]:
        assert _idle_run(Container(name, labels, "exited"), 60) is None, name
    assert _idle_run(Container("abaco-T-A1-E1", {"abaco.actor": "A1"}, "exited"), 7200) \
        is None, "within the grace"


@pytest.mark.parametrize("cut", [b"export MSG='half a val", b"export MSG='whole'\n"])
def test_a_worker_dying_mid_delivery_leaves_a_run_that_starts_afresh(
        platform: Platform, runner: DockerRunner, cut: bytes):
    """The worker renamed the container to the execution's and died writing to it:
    the shim ran nothing, so the execution's next worker starts it, once."""
    from jobs.runners.docker import container_name

    actor = _ready_actor(platform)
    worker = _ready_worker(platform, runner, actor["id"])
    assert runner._prewarmer is not None
    eid = _send(platform, actor["id"], "handed over twice")
    assert worker.spare is not None
    worker.results_socket = worker.spare.path  # as the worker does when it serves
    spec = worker._spec(platform.store.get_execution("T", actor["id"], eid))
    prepared = runner._prewarmer.take(spec)
    prepared.container.rename(container_name(spec))
    raw = prepared.stdin._sock
    raw.sendall(cut)
    raw.shutdown(socket.SHUT_RDWR)  # the worker died here
    wait_until(lambda: runner.client.api.inspect_container(prepared.container.id)["State"][
        "Status"] == "exited", 30, "the shim gave up")
    adopter = DockerRunner(platform.settings)
    handle = adopter.start(spec)
    assert not handle.startswith(prepared.container.id), "a fresh container"
    output: list[bytes] = []
    result = adopter.wait(handle, output.append, time.time() + 60)
    assert result.exit_code == 0 and b"Contents of MSG: handed over twice" in b"".join(output)
    assert adopter.start(spec) == handle, "started once: a second start finds it"
    adopter.stop(handle, remove=True)


def test_the_shim_hands_over_any_value_unchanged():
    """The delivery script through busybox's own shell, as in the container."""
    values = {"PLAIN": "x", "QUOTES": "it's \"quoted\"", "NEWLINES": "a\nb\n",
              "SHELLISH": "$(touch /nope) `id` ${HOME} \\ ; | &", "EMPTY": "",
              "UNICODE": "héllo ✓"}
    script = shim.env_script(values, set())
    assert script is not None
    busybox = shim.find_busybox("")
    if busybox is None:
        pytest.skip("no static busybox on this host")
    out = subprocess.run([str(busybox), "sh", "-c", ". /dev/stdin; unset _abaco_shim_go; "
                          "env -0"], input=script, capture_output=True, check=True,
                         env={"PATH": "/usr/bin:/bin"}).stdout
    env = dict(item.split("=", 1) for item in out.decode().split("\0") if "=" in item)
    assert {k: env[k] for k in values} == values
    assert "SHLVL" not in env and "PWD" not in env
    assert shim.env_script({"not-a-name": "v"}, set()) is None
    assert shim.env_script({"_abaco_shim_go": "1"}, set()) is None


def test_only_a_static_busybox_is_mounted(tmp_path: Any):
    busybox = shim.find_busybox("")
    if busybox is None:
        pytest.skip("no static busybox on this host")
    assert shim.is_static_elf(busybox)
    assert not shim.is_static_elf(__import__("pathlib").Path("/bin/ls")), "dynamic"
    script = tmp_path / "x.sh"
    script.write_text("#!/bin/sh\n")
    assert not shim.is_static_elf(script)
    assert shim.find_busybox(str(script)) is None
