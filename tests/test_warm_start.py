"""Abaco starts a worker when an actor is registered or updated, so its first message is
warm; here too, from spare slots only (the real scheduler and worker, the shipped fakes)."""

from __future__ import annotations

from jobs.service import Message
from tests.harness import CALLER, Harness, running_harness
from tests.waits import wait_until


def _workers(harness: Harness, actor_id: str) -> list[dict]:
    return harness.store.workers("T", actor_id)


def test_a_registered_actor_gets_a_worker_before_any_message(harness: Harness):
    actor = harness.actor()
    harness.scheduler.reconcile("T", actor["id"])
    assert len(_workers(harness, actor["id"])) == 1, "warm before its first message"
    assert harness.store.get_actor("T", actor["id"])["warm_start"] in (0, "0")
    harness.scheduler.reconcile("T", actor["id"])
    assert len(_workers(harness, actor["id"])) == 1, "once, not once per pass"
    harness.platform.update_actor(CALLER, actor["id"], {"image": "img-a", "force": True})
    wait_until(lambda: harness.scheduler.reconcile("T", actor["id"]) or any(
        w.get("revision") == 2 for w in _workers(harness, actor["id"])), 10,
        "a worker of the new revision after the update")


def test_no_warm_start_while_messages_wait_elsewhere(harness: Harness):
    busy = harness.actor(defaultEnvironment={"SLEEP": "0"})
    harness.runner.plan = lambda spec: __import__("jobs.runners.fake", fromlist=["x"]).FakeRun(
        duration_s=30)
    for _ in range(3):
        harness.platform.send_message(CALLER, busy["id"], Message("x", "str", {}))
    harness.scheduler.tick()
    assert harness.scheduler.backlog >= 1
    quiet = harness.platform.create_actor(CALLER, {"image": "img-a"})
    wait_until(lambda: harness.scheduler.reconcile("T", quiet["id"]) or harness.store.get_actor(
        "T", quiet["id"])["status"] == "READY", 10, "READY")
    harness.scheduler.reconcile("T", quiet["id"])
    assert _workers(harness, quiet["id"]) == [], "a waiting message comes first"
    assert str(harness.store.get_actor("T", quiet["id"])["warm_start"]) == "0", "and only once"


def test_bulk_registration_fills_spare_slots_and_no_more(settings):  # type: ignore[no-untyped-def]
    with running_harness(settings, max_workers_per_host=3) as harness:
        ids = [harness.platform.create_actor(CALLER, {"image": "img-a"})["id"]
               for _ in range(12)]
        harness.scheduler.acquire_lock()
        wait_until(lambda: harness.scheduler.tick() or all(
            harness.store.get_actor("T", a)["status"] == "READY" for a in ids), 10, "READY")
        for _ in range(2):
            harness.scheduler.tick()
        warm = [a for a in ids if _workers(harness, a)]
        assert len(warm) == 3, "as many as the host has slots"
        assert all(str(harness.store.get_actor("T", a)["warm_start"]) == "0" for a in ids)
        harness.scheduler.tick()
        assert [a for a in ids if _workers(harness, a)] == warm, "no churn afterwards"


def test_a_message_at_the_host_cap_reclaims_a_warm_worker_at_once(settings):  # type: ignore[no-untyped-def]
    """Warm workers from registrations fill the host; a message for another actor frees one
    of them in the same reconcile, not a full pass later."""
    with running_harness(settings, max_workers_per_host=2) as harness:
        ids = [harness.platform.create_actor(CALLER, {"image": "img-a"})["id"]
               for _ in range(3)]
        harness.scheduler.acquire_lock()
        wait_until(lambda: harness.scheduler.tick() or len(
            [a for a in ids if _workers(harness, a)]) == 2, 10, "two warm workers")
        warm = [a for a in ids if _workers(harness, a)]
        cold = next(a for a in ids if a not in warm)
        assert len(warm) == 2 and harness.scheduler.placer.capacity() == 0
        wait_until(lambda: all(w["status"] == "READY" for a in warm
                               for w in _workers(harness, a)), 10, "warm workers READY")
        harness.platform.send_message(CALLER, cold, Message("x", "str", {}))
        harness.scheduler.reconcile("T", cold)
        wait_until(lambda: harness.scheduler.reconcile("T", cold) or _workers(harness, cold),
                   3, "a worker for the waiting message, at once")
