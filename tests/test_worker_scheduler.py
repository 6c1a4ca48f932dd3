"""Worker and scheduler in-process, on real Redis, S3, OpenBao and Docker."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from jobs.keys import INBOX_GROUP
from jobs.runners.docker import DockerRunner
from jobs.service import Caller, Message, Platform
from jobs.settings import Settings
from jobs.worker import Worker
from scheduler.loop import Scheduler
from tests.docker_events import runs_begun
from tests.harness import register_worker
from tests.waits import wait_until

CALLER = Caller("alice", "T")


class RecordingPlacer:
    """Stands in for LocalPlacer where a test must see, not spawn, worker starts."""

    host = "recording-host"
    location = "recording"

    def __init__(self) -> None:
        self.started: list[tuple[str, str]] = []

    def place(self, tenant: str, actor_id: str, worker_id: str) -> None:
        self.started.append((tenant, actor_id))

    def capacity(self) -> int:
        return 100

    def release(self, worker_id: str, graceful: bool = True) -> None:
        return None

    def ended(self) -> list[tuple[str, str, str]]:
        return []

    def drain(self, timeout_s: float) -> None:
        return None


def _worker(platform: Platform, runner: DockerRunner, actor_id: str, wid: str = "w1") -> Worker:
    register_worker(platform.store, "T", actor_id, wid)
    worker = Worker(platform.settings, "T", actor_id, wid, platform.store, platform.logs,
                    platform.secrets, runner)
    assert worker.activate()
    return worker


def _ready_actor(platform: Platform, **fields: Any) -> dict[str, Any]:
    fields.setdefault("defaultEnvironment", {"SLEEP": ""})  # messages may set it
    actor = platform.create_actor(CALLER, {"image": "abaco-test-echo", **fields})
    platform.store.update_actor("T", actor["id"], {"status": "READY"})
    return actor


def _send(platform: Platform, actor_id: str, body: Any = "hello", **env: str) -> str:
    message = Message(body, "str" if isinstance(body, str) else "application/json", env)
    return str(platform.send_message(CALLER, actor_id, message)["execution_id"])


def _serve_one(worker: Worker) -> None:
    entry = worker._next_entry()
    assert entry is not None
    worker.handle(*entry)


def test_a_message_becomes_a_complete_execution(platform: Platform, runner: DockerRunner):
    actor = _ready_actor(platform, name="echo", defaultEnvironment={"SECRET_ONE": "s1"},
                         stateless=False)
    platform.store.set_state("T", actor["id"], {"n": 1})
    eid = _send(platform, actor["id"], {"k": "v"}, color="red")
    worker = _worker(platform, runner, actor["id"])
    _serve_one(worker)
    record = platform.store.get_execution("T", actor["id"], eid)
    assert record["status"] == "COMPLETE" and record["exit_code"] == 0
    assert record["worker_id"] == "w1" and record["queue_time"] >= 0
    assert record["final_state"]["Status"] == "exited"
    logs = platform.logs.get_logs("T", actor["id"], eid).decode()
    assert "Contents of MSG: {'k': 'v'}" in logs
    for line in ("SECRET_ONE=s1", "color=red", f"_abaco_execution_id={eid}",
                 f"_abaco_actor_id={actor['id']}", "_abaco_Content_Type=application/json",
                 "_abaco_actor_state={'n': 1}", "_abaco_actor_name=echo", "_abaco_worker_id=w1",
                 "_abaco_container_repo=abaco-test-echo", "_abaco_username=alice"):
        assert line in logs
    assert platform.store.live_log("T", actor["id"], eid) is None
    inbox = platform.store.keys.inbox("T", actor["id"])
    assert platform.store.r.xpending(inbox, INBOX_GROUP)["pending"] == 0
    assert platform.store.r.xlen(inbox) == 0


def test_a_container_that_cannot_start_ends_error_and_the_scheduler_judges_the_image(
        platform: Platform, runner: DockerRunner):
    actor = _ready_actor(platform)
    worker = _worker(platform, runner, actor["id"])
    worker.actor["image"] = "abaco-test-missing:0"  # the image went away after the check
    eid = _send(platform, actor["id"])
    _serve_one(worker)
    record = platform.store.get_execution("T", actor["id"], eid)
    assert record["status"] == "ERROR" and "abaco-test-missing" in record["status_message"]
    after = platform.store.get_actor("T", actor["id"])
    assert after["status"] == "SUBMITTED", "a worker asks for a check; it never sets ERROR"


def test_logs_are_live_while_running(platform: Platform, runner: DockerRunner):
    actor = _ready_actor(platform)
    eid = _send(platform, actor["id"], SLEEP="3")
    worker = _worker(platform, runner, actor["id"])
    thread = threading.Thread(target=_serve_one, args=(worker,))
    thread.start()
    wait_until(lambda: "Contents of MSG" in platform.get_logs(CALLER, actor["id"], eid), 20,
               "live logs")
    assert platform.store.get_execution("T", actor["id"], eid)["status"] == "RUNNING"
    thread.join(30)
    assert platform.store.get_execution("T", actor["id"], eid)["status"] == "COMPLETE"
    assert "Contents of MSG" in platform.get_logs(CALLER, actor["id"], eid)


def test_scheduler_makes_an_actor_ready_or_error_naming_the_image(
        platform: Platform, runner: DockerRunner):
    placer = RecordingPlacer()
    asked: list[str] = []
    real_check = runner.check_image
    runner.check_image = lambda image: asked.append(image) or real_check(image)  # type: ignore[method-assign]
    scheduler = Scheduler(platform.settings, platform.store, runner, placer)  # type: ignore[arg-type]
    good = platform.create_actor(CALLER, {"image": "abaco-test-echo"})
    bad = platform.create_actor(CALLER, {"image": "abaco-test-absent:9"})
    queued = _send(platform, bad["id"])
    wait_until(lambda: scheduler.tick() or (
        platform.store.get_actor("T", good["id"])["status"] == "READY"
        and platform.store.get_actor("T", bad["id"])["status"] == "ERROR"), 30, "image checks")
    scheduler.tick()
    assert "abaco-test-absent:9" in platform.store.get_actor("T", bad["id"])["status_message"]
    assert asked.count("abaco-test-absent:9") == platform.settings.start_attempts, "retried"
    record = platform.store.get_execution("T", bad["id"], queued)
    assert record["status"] == "ERROR" and "abaco-test-absent:9" in record["status_message"]
    assert placer.started == []
    _send(platform, good["id"])
    scheduler.tick()
    assert placer.started == [("T", good["id"])]


def test_a_lost_worker_run_is_adopted_and_an_unstarted_message_redelivered(
        platform: Platform, runner: DockerRunner):
    actor = _ready_actor(platform)
    started = _send(platform, actor["id"], SLEEP="1")
    unstarted = _send(platform, actor["id"])
    store = platform.store
    since = int(time.time()) - 1
    dead = _worker(platform, runner, actor["id"], "dead")
    first = dead._next_entry()
    second = dead._next_entry()
    assert first and second and first[1] == started
    assert store.inbox.claim("T", actor["id"], "dead", 1, *first) == "claimed"
    spec = dead._spec(store.get_execution("T", actor["id"], started))
    handle = runner.start(spec)
    assert store.inbox.running("T", actor["id"], "dead", started, {"handle": handle}) == "ok"
    store.r.delete(store.keys.heartbeat("T", actor["id"], "dead"))  # the worker dies here
    placer = RecordingPlacer()
    Scheduler(platform.settings, store, runner, placer).tick()  # type: ignore[arg-type]
    assert store.get_execution("T", actor["id"], started)["status"] == "RUNNING"
    assert store.get_execution("T", actor["id"], unstarted)["status"] == "SUBMITTED"
    assert "dead" not in [w["id"] for w in store.workers("T", actor["id"])]
    assert placer.started and set(placer.started) == {("T", actor["id"])}
    worker = _worker(platform, runner, actor["id"], "w2")
    assert worker.adopt_orphans() == 1, "the dead worker's run is adopted first"
    _serve_one(worker)
    adopted = store.get_execution("T", actor["id"], started)
    assert adopted["status"] == "COMPLETE" and adopted["exit_code"] == 0, adopted
    assert adopted["worker_id"] == "w2" and "Contents of MSG" in platform.get_logs(
        CALLER, actor["id"], started)
    assert store.get_execution("T", actor["id"], unstarted)["status"] == "COMPLETE"
    assert worker._next_entry() is None
    assert runs_begun(runner.client.api, actor["id"], since)[started] == 1, \
        "adopted, not run twice"


def test_draining_workers_lets_running_executions_finish_and_keeps_the_queue(
        platform: Platform):
    """What the scheduler does on SIGTERM (placer.drain), with a real worker process."""
    from jobs.placers.local import LocalPlacer

    actor = _ready_actor(platform, stateless=False)
    running = _send(platform, actor["id"], SLEEP="2")
    queued = _send(platform, actor["id"])
    placer = LocalPlacer(platform.settings, platform.store)
    scheduler = Scheduler(platform.settings, platform.store, DockerRunner(platform.settings),
                          placer)
    assert scheduler.acquire_lock()
    assert scheduler.start_worker(platform.store.get_actor("T", actor["id"]))
    store = platform.store
    wait_until(lambda: store.get_execution("T", actor["id"], running)["status"] == "RUNNING",
               30, "RUNNING")
    placer.drain(30)
    record = store.get_execution("T", actor["id"], running)
    assert record["status"] == "COMPLETE" and record["exit_code"] == 0
    assert store.get_execution("T", actor["id"], queued)["status"] == "SUBMITTED"
    assert store.queued_ids("T", actor["id"]) == [queued]
    assert placer.children == {}


def test_a_scheduler_with_refused_credentials_exits_before_taking_the_lock(settings: Settings):
    from jobs.secrets import SecretStore
    from jobs.settings import Secret
    from jobs.store import Store
    from scheduler.loop import check_credentials

    check_credentials(Store.from_settings(settings), SecretStore(settings))  # the good ones
    wrong_redis = settings.replace(redis_password=Secret("not-the-password"))
    with pytest.raises(SystemExit, match="ABACO_REDIS_PASSWORD"):
        check_credentials(Store.from_settings(wrong_redis), SecretStore(settings))
    wrong_vault = settings.replace(vault_token=Secret("not-the-token"))
    with pytest.raises(SystemExit, match="vault_token"):
        check_credentials(Store.from_settings(settings), SecretStore(wrong_vault))


def test_a_binary_message_reaches_the_container_by_reference(platform: Platform,
                                                             runner: DockerRunner):
    actor = _ready_actor(platform)
    eid = platform.send_message(CALLER, actor["id"], Message(
        "", "application/octet-stream", {}, b"\x00\x01" * 40))["execution_id"]
    _serve_one(_worker(platform, runner, actor["id"]))
    assert "binary bytes: 80" in platform.get_logs(CALLER, actor["id"], eid)
    assert platform.store.get_binary("T", actor["id"], eid) is None, "dropped once final"
