"""Races and crashes, replayed deterministically with the shipped fakes."""

from __future__ import annotations

import threading

import pytest

from jobs.runners.fake import FakeRun
from tests.harness import Harness
from tests.waits import wait_until


def test_smoke_a_message_completes_through_scheduler_and_memory_workers(harness: Harness):
    actor = harness.actor()
    eid = harness.send(actor["id"])
    harness.scheduler.reconcile("T", actor["id"])
    record = wait_until(lambda: (r := harness.execution(actor["id"], eid))["status"]
                        == "COMPLETE" and r, 10, "COMPLETE")
    assert record["exit_code"] == 0 and record["revision"] == 1
    assert harness.runner.starts[eid] == 1


def _entry(harness: Harness, worker) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    entry = worker._next_entry()
    assert entry is not None
    return entry


def _declare_dead(harness: Harness, actor_id: str, worker_id: str) -> None:
    """The worker's heartbeat lapses (a stall), and the scheduler resolves what it held."""
    from scheduler.recovery import recover_actor

    harness.store.r.delete(harness.store.keys.heartbeat("T", actor_id, worker_id))
    harness.scheduler.acquire_lock()
    recover_actor(harness.store, harness.scheduler.epoch, "T", actor_id)


def _events(harness: Harness, actor_id: str, eid: str) -> list[dict]:
    raw = harness.store.r.xrange(harness.store.keys.events("T", actor_id))
    return [f for _i, f in raw if f.get(b"execution_id") == eid.encode()]


def test_a_zombie_worker_can_no_longer_claim_mark_running_finish_or_re_register(
        harness: Harness):
    actor = harness.actor()
    zombie = harness.manual_worker(actor, "zombie")
    first, second = harness.send(actor["id"]), harness.send(actor["id"])
    entry1, _ = _entry(harness, zombie)
    entry2, _ = _entry(harness, zombie)
    inbox = harness.store.inbox
    assert inbox.claim("T", actor["id"], "zombie", 1, entry1, first) == "claimed"
    _declare_dead(harness, actor["id"], "zombie")
    assert inbox.claim("T", actor["id"], "zombie", 1, entry2, second) == "fenced"
    assert inbox.running("T", actor["id"], "zombie", first, {"handle": "h"}) == "fenced"
    assert inbox.finish("T", actor["id"], "zombie", entry1, first, "COMPLETE", {}) == "fenced"
    assert inbox.heartbeat("T", actor["id"], "zombie", 5) is False, "no re-registration"
    assert not zombie.activate()
    assert "zombie" not in [w["id"] for w in harness.store.workers("T", actor["id"])]
    record = harness.execution(actor["id"], first)
    assert record["status"] == "SUBMITTED" and record["worker_id"] is None
    assert harness.store.inbox.orphans("T", actor["id"]) == [first], "adopted first"
    assert harness.store.queued_ids("T", actor["id"]) == [second]


def test_a_stalled_worker_run_is_adopted_once_and_its_late_finish_refused(harness: Harness):
    gate = threading.Event()
    harness.runner.plan = lambda spec: FakeRun(exit_code=5, logs=b"the true result\n",
                                               gate=gate)
    actor = harness.actor()
    stalled = harness.manual_worker(actor, "stalled")
    eid = harness.send(actor["id"])
    entry = _entry(harness, stalled)
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            stalled.handle(*entry)
        except BaseException as exc:  # noqa: BLE001 - the zombie's end is what we check
            errors.append(exc)

    thread = threading.Thread(target=serve)
    thread.start()
    wait_until(lambda: harness.execution(actor["id"], eid)["status"] == "RUNNING", 10,
               "RUNNING")
    _declare_dead(harness, actor["id"], "stalled")
    adopter = harness.manual_worker(actor, "adopter")
    adopted = threading.Thread(target=adopter.adopt_orphans)
    adopted.start()
    gate.set()
    thread.join(10)
    adopted.join(10)
    record = harness.execution(actor["id"], eid)
    assert record["status"] == "COMPLETE" and record["exit_code"] == 5
    assert record["worker_id"] == "adopter"
    assert harness.runner.starts[eid] == 1, "adopted, never started twice"
    assert len(_events(harness, actor["id"], eid)) == 1, "one completion event"
    assert errors and type(errors[0]).__name__ == "Fenced", errors
    assert "the true result" in harness.platform.get_logs(
        __import__("tests.harness").harness.CALLER, actor["id"], eid)


def test_a_replayed_recovery_never_touches_a_run_another_worker_holds(harness: Harness):
    gate = threading.Event()
    harness.runner.plan = lambda spec: FakeRun(gate=gate)
    actor = harness.actor()
    dead = harness.manual_worker(actor, "dead")
    eid = harness.send(actor["id"])
    old_entry, _ = _entry(harness, dead)
    assert harness.store.inbox.claim("T", actor["id"], "dead", 1, old_entry, eid) == "claimed"
    _declare_dead(harness, actor["id"], "dead")   # orphaned and redelivered, in one step
    live = harness.manual_worker(actor, "live")
    serving = threading.Thread(target=live.adopt_orphans)
    serving.start()
    wait_until(lambda: harness.execution(actor["id"], eid)["status"] == "RUNNING", 10,
               "RUNNING")
    # A scheduler that crashed mid-recovery replays the old entry later:
    harness.scheduler.acquire_lock()
    replay = harness.store.inbox.recover(harness.scheduler.epoch, "T", actor["id"], "dead",
                                         old_entry, eid)
    assert replay in ("stale", "acked")
    record = harness.execution(actor["id"], eid)
    assert record["status"] == "RUNNING" and record["worker_id"] == "live"
    assert harness.runner.running() == [eid], "the live run was not killed"
    gate.set()
    serving.join(10)
    assert harness.execution(actor["id"], eid)["status"] == "COMPLETE"


def test_two_schedulers_never_give_a_stateful_actor_two_workers(harness: Harness):
    from scheduler.loop import Scheduler

    actor = harness.actor(stateless=False)
    paused = harness.scheduler
    assert paused.acquire_lock()
    old_epoch = paused.epoch
    harness.store.r.delete(harness.store.keys.scheduler_lock())  # its lease lapses
    standby = Scheduler(paused.settings, harness.store, harness.runner, paused.placer)
    assert standby.acquire_lock() and standby.epoch > old_epoch
    assert standby.start_worker(actor) is not None
    paused.epoch = old_epoch  # it wakes up, believing it still holds the lock
    assert paused.start_worker(actor) is None
    late = harness.store.inbox.register(old_epoch, "T", actor["id"], {"id": "late"}, 5, -1, 1)
    assert late == "fenced", "even without the one-worker rule, the old epoch may not write"
    assert standby.start_worker(actor) is None, "a stateful actor has one worker"
    assert len(harness.store.workers("T", actor["id"])) == 1
    assert not paused.acquire_lock(), "and it sees it lost the lock"
    standby.close()


def test_an_update_during_a_blocking_read_never_runs_the_unchecked_image(harness: Harness):
    images = {"img-a"}
    harness.runner.images = images
    actor = harness.actor()
    old = harness.manual_worker(actor, "old")
    harness.platform.update_actor(__import__("tests.harness").harness.CALLER, actor["id"],
                                  {"image": "img-b"})
    eid = harness.send(actor["id"])
    assert old.handle(*_entry(harness, old)) is False, "an old revision leaves"
    assert harness.runner.starts[eid] == 0
    harness.scheduler.acquire_lock()
    harness.scheduler.reconcile("T", actor["id"])   # checks img-b: missing
    wait_until(lambda: harness.scheduler.reconcile("T", actor["id"]) or
               harness.store.get_actor("T", actor["id"])["status"] == "ERROR", 10, "ERROR")
    assert harness.runner.starts[eid] == 0, "the unchecked image never ran"
    images.add("img-b")
    harness.platform.update_actor(__import__("tests.harness").harness.CALLER, actor["id"],
                                  {"image": "img-b", "force": True})
    eid2 = harness.send(actor["id"])
    wait_until(lambda: harness.scheduler.reconcile("T", actor["id"]) or
               harness.execution(actor["id"], eid2)["status"] == "COMPLETE", 15, "COMPLETE")
    record = harness.execution(actor["id"], eid2)
    assert record["revision"] == 3
    assert {spec.image for spec in harness.runner.history} == {"img-b"}


def test_a_stale_image_check_never_decides_a_newer_revision(harness: Harness):
    from jobs.runners.base import ImageCheck

    actor = harness.actor()
    harness.scheduler.acquire_lock()
    harness.store.update_actor("T", actor["id"], {"image": "img-missing", "revision": 2,
                                                  "status": "SUBMITTED"})
    # the verdict on revision 1 (image present) arrives late:
    harness.scheduler.images._apply(harness.scheduler.epoch,
                                    ("T", actor["id"], 1, "img-a"), ImageCheck(True))
    assert harness.store.get_actor("T", actor["id"])["status"] == "SUBMITTED"


def test_one_failed_start_does_not_fail_the_queue(harness: Harness):
    failures = {"left": 3}

    def flaky(spec):  # type: ignore[no-untyped-def]
        if failures["left"] > 0:
            failures["left"] -= 1
            return FakeRun(start_error="engine restarting", start_error_transient=True)
        return FakeRun()

    harness.runner.plan = flaky
    actor = harness.actor()
    eids = [harness.send(actor["id"]) for _ in range(4)]
    wait_until(lambda: harness.scheduler.reconcile("T", actor["id"]) or all(
        harness.execution(actor["id"], e)["status"] == "COMPLETE" for e in eids), 20,
        "every message COMPLETE")
    assert harness.store.get_actor("T", actor["id"])["status"] == "READY"
    assert all(harness.runner.starts[e] == 1 for e in eids)


def test_an_s3_outage_never_turns_a_good_run_into_error(harness: Harness,
                                                       monkeypatch: pytest.MonkeyPatch):
    import scheduler.loop
    from jobs.errors import NotFound
    from jobs.logstore import LogStore

    actor = harness.actor()
    worker = harness.manual_worker(actor, "w")
    good_logs = worker.logs
    worker.logs = LogStore(harness.platform.settings.replace(
        s3_endpoint="http://127.0.0.1:9"))  # nothing listens there
    eid = harness.send(actor["id"])
    worker.handle(*_entry(harness, worker))
    record = harness.execution(actor["id"], eid)
    assert record["status"] == "COMPLETE" and record["exit_code"] == 0
    caller = __import__("tests.harness").harness.CALLER
    assert f"ran {eid}" in harness.platform.get_logs(caller, actor["id"], eid), "kept in redis"
    harness.scheduler.logs = good_logs
    harness.scheduler._copy_pending_logs()
    with pytest.raises(NotFound):  # just finished: left to its worker for a while
        good_logs.get_logs("T", actor["id"], eid)
    monkeypatch.setattr(scheduler.loop, "LOG_COPY_GRACE_S", 0.0)
    harness.scheduler._copy_pending_logs()
    assert f"ran {eid}" in good_logs.get_logs("T", actor["id"], eid).decode()
    assert harness.store.live_log("T", actor["id"], eid) is None


def test_a_message_racing_a_delete_is_refused_or_accounted_for(harness: Harness):
    from jobs.errors import Conflict, NotFound

    actor = harness.actor()
    accepted: list[str] = []
    refused: list[str] = []
    stop = threading.Event()

    def sender() -> None:
        for _ in range(200):
            if stop.is_set():
                return
            try:
                accepted.append(harness.send(actor["id"]))
            except (Conflict, NotFound) as exc:
                refused.append(str(exc))
                return

    thread = threading.Thread(target=sender)
    thread.start()
    wait_until(lambda: len(accepted) >= 5, 10, "some messages accepted")
    harness.platform.delete_actor(__import__("tests.harness").harness.CALLER, actor["id"])
    stop.set()
    thread.join(10)
    leftovers = [k for k in harness.store.r.scan_iter(match=f"*{{T/{actor['id']}}}*")]
    assert leftovers == [], "no orphan keys"


def test_a_worker_rides_out_a_redis_blip_and_finishes_its_run(harness: Harness):
    from jobs.keys import Keys
    from jobs.placers.memory import SeverableRedis
    from jobs.store import Store, connect
    from jobs.worker import Worker

    gate = threading.Event()
    harness.runner.plan = lambda spec: FakeRun(exit_code=4, gate=gate)
    actor = harness.actor()
    harness.manual_worker(actor, "w")  # registered; this worker runs on its own connection
    client = connect(harness.platform.settings, SeverableRedis)
    assert isinstance(client, SeverableRedis)
    worker = Worker(harness.platform.settings, "T", actor["id"], "w",
                    Store(client, Keys(harness.platform.settings.prefix)),
                    harness.platform.logs, harness.platform.secrets, harness.runner)
    assert worker.activate()
    eid = harness.send(actor["id"])
    serving = threading.Thread(target=worker.handle, args=_entry(harness, worker))
    serving.start()
    wait_until(lambda: harness.execution(actor["id"], eid)["status"] == "RUNNING", 10,
               "RUNNING")
    client.severed = True          # Redis goes away...
    gate.set()                     # ...while the run ends
    wait_until(lambda: harness.runner.running() == [], 10, "the run ended")
    assert harness.execution(actor["id"], eid)["status"] == "RUNNING"
    client.severed = False         # Redis is back
    serving.join(10)
    record = harness.execution(actor["id"], eid)
    assert record["status"] == "COMPLETE" and record["exit_code"] == 4
    assert record["worker_id"] == "w" and not worker.fenced.is_set()


def test_a_vault_outage_gives_the_message_back_instead_of_failing_it(harness: Harness):
    from jobs.secrets import SecretStore

    actor = harness.actor(defaultEnvironment={"TOKEN": "s3cret"})
    worker = harness.manual_worker(actor, "w")
    good = worker.secrets
    worker.secrets = SecretStore(harness.platform.settings.replace(
        vault_addr="http://127.0.0.1:9"))  # nothing listens there
    eid = harness.send(actor["id"])
    assert worker.handle(*_entry(harness, worker)) is True
    record = harness.execution(actor["id"], eid)
    assert record["status"] == "SUBMITTED" and record["worker_id"] is None
    assert harness.store.queued_ids("T", actor["id"]) == [eid]
    assert "waiting: vault" in harness.store.get_actor("T", actor["id"])["status_message"]
    assert harness.runner.starts[eid] == 0
    worker.secrets = good
    worker.handle(*_entry(harness, worker))
    assert harness.execution(actor["id"], eid)["status"] == "COMPLETE"
    assert harness.runner.history[-1].env["TOKEN"] == "s3cret"


def test_a_poison_message_that_keeps_killing_workers_ends_error(harness: Harness):
    actor = harness.actor()
    eid = harness.send(actor["id"])
    most = harness.platform.settings.max_recoveries
    for attempt in range(most + 1):
        worker = harness.manual_worker(actor, f"victim{attempt}")
        if attempt == 0:
            entry, got = _entry(harness, worker)
            assert got == eid
            assert harness.store.inbox.claim("T", actor["id"], worker.worker_id, 1, entry,
                                             eid) == "claimed"
        else:  # the orphan is adopted, and its adopter dies before starting it too
            assert harness.store.inbox.orphans("T", actor["id"]) == [eid]
            assert harness.store.inbox.adopt("T", actor["id"], worker.worker_id, eid) == "adopt"
        _declare_dead(harness, actor["id"], worker.worker_id)
    record = harness.execution(actor["id"], eid)
    assert record["status"] == "ERROR" and "given up" in record["status_message"]
    assert harness.store.queued_ids("T", actor["id"]) == []
    assert len(_events(harness, actor["id"], eid)) == 1


def test_deleting_an_actor_leaves_nothing_of_its_running_run_on_the_engine(harness: Harness):
    gate = threading.Event()
    harness.runner.plan = lambda spec: FakeRun(gate=gate)
    actor = harness.actor()
    worker = harness.manual_worker(actor, "w")
    eid = harness.send(actor["id"])
    serving = threading.Thread(target=lambda: _swallow(worker.handle, *_entry(harness, worker)))
    serving.start()
    wait_until(lambda: harness.runner.running() == [eid], 10, "running")
    harness.store.delete_actor("T", actor["id"])   # the records go while it runs
    gate.set()
    serving.join(10)
    assert harness.runner.runs == {}, "the run was removed from the engine"


def _swallow(step, *args) -> None:  # type: ignore[no-untyped-def]
    try:
        step(*args)
    except Exception:  # noqa: BLE001 - the worker leaves fenced; the engine is what we check
        return


def test_a_stateful_actor_adopts_a_dead_worker_run_before_starting_the_next(harness: Harness):
    gates = {"first": threading.Event(), "next": threading.Event()}
    order: list[str] = []

    def plan(spec):  # type: ignore[no-untyped-def]
        order.append(spec.execution_id)
        return FakeRun(gate=gates["first"] if len(order) == 1 else gates["next"])

    harness.runner.plan = plan
    actor = harness.actor(stateless=False)
    dying = harness.manual_worker(actor, "dying")
    first, second = harness.send(actor["id"]), harness.send(actor["id"])
    threading.Thread(target=_swallow, args=(dying.handle, *_entry(harness, dying))).start()
    wait_until(lambda: harness.execution(actor["id"], first)["status"] == "RUNNING", 10,
               "first RUNNING")
    _declare_dead(harness, actor["id"], "dying")
    successor = harness.manual_worker(actor, "successor")
    serving = threading.Thread(target=successor.handle, args=_entry(harness, successor))
    serving.start()
    wait_until(lambda: harness.execution(actor["id"], first)["worker_id"] == "successor", 10,
               "the orphan adopted")
    assert harness.runner.starts[second] == 0, "nothing new starts while the orphan runs"
    gates["first"].set()
    wait_until(lambda: harness.execution(actor["id"], first)["status"] == "COMPLETE", 10,
               "first COMPLETE")
    wait_until(lambda: harness.runner.starts[second] == 1, 10, "then the next one starts")
    gates["next"].set()
    serving.join(10)
    assert order == [first, second]
    assert harness.execution(actor["id"], second)["start_time"] >= harness.execution(
        actor["id"], first)["finish_time"], "the two runs never overlap"


def test_cancelling_a_dead_worker_run_stops_it_when_adopted(harness: Harness):
    harness.runner.plan = lambda spec: FakeRun(gate=threading.Event())  # runs until stopped
    actor = harness.actor()
    dying = harness.manual_worker(actor, "dying")
    eid = harness.send(actor["id"])
    threading.Thread(target=_swallow, args=(dying.handle, *_entry(harness, dying))).start()
    wait_until(lambda: harness.execution(actor["id"], eid)["status"] == "RUNNING", 10,
               "RUNNING")
    _declare_dead(harness, actor["id"], "dying")
    harness.platform.cancel_execution(__import__("tests.harness").harness.CALLER, actor["id"],
                                      eid)
    adopter = harness.manual_worker(actor, "adopter")
    assert adopter.adopt_orphans() == 1
    record = harness.execution(actor["id"], eid)
    assert record["status"] == "COMPLETE" and record["exit_code"] == 137
    assert record["status_message"].startswith("cancelled")


def test_a_run_the_engine_keeps_refusing_ends_error_instead_of_cycling(harness: Harness):
    harness.runner.plan = lambda spec: FakeRun(
        start_error="500: environment variable value can't contain null",
        start_error_answered=True)
    actor = harness.actor()
    eid = harness.send(actor["id"])
    wait_until(lambda: harness.scheduler.reconcile("T", actor["id"]) or
               harness.execution(actor["id"], eid)["status"] == "ERROR", 30, "ERROR")
    record = harness.execution(actor["id"], eid)
    assert "refused" in record["status_message"] and "null" in record["status_message"]
    attempts = harness.platform.settings.start_attempts
    assert harness.runner.start_attempts[eid] == attempts * (
        harness.platform.settings.max_recoveries + 1), "bounded tries"
    assert harness.store.get_actor("T", actor["id"])["status"] == "READY"


def test_an_engine_that_is_down_is_waited_for_without_limit(harness: Harness):
    actor = harness.actor()
    harness.runner.engine_down = True
    eid = harness.send(actor["id"])
    wait_until(lambda: harness.scheduler.reconcile("T", actor["id"]) or
               harness.runner.start_attempts[eid] > 3 * (
                   harness.platform.settings.max_recoveries + 2), 30, "many tries")
    assert harness.execution(actor["id"], eid)["status"] == "SUBMITTED"
    harness.runner.engine_down = False
    wait_until(lambda: harness.scheduler.reconcile("T", actor["id"]) or
               harness.execution(actor["id"], eid)["status"] == "COMPLETE", 30, "COMPLETE")


def test_deleting_an_actor_cancels_what_its_workers_hold(harness: Harness):
    harness.runner.plan = lambda spec: FakeRun(gate=threading.Event())  # runs until stopped
    actor = harness.actor()
    worker = harness.manual_worker(actor, "w")
    eid = harness.send(actor["id"])
    threading.Thread(target=_swallow, args=(worker.handle, *_entry(harness, worker))).start()
    wait_until(lambda: harness.runner.running() == [eid], 10, "running")
    sent: list[tuple[str, str]] = []
    real_send = harness.store.send_control
    harness.store.send_control = lambda t, a, w, command, ttl: (  # type: ignore[method-assign]
        sent.append((w, command)), real_send(t, a, w, command, ttl))[-1]
    harness.platform.delete_actor(__import__("tests.harness").harness.CALLER, actor["id"])
    assert ("w", f"cancel:{eid}") in sent, "the holder is told to stop the run at once"
