"""The scheduler's pass costs what there is to do, not what is registered: idle actors
are looked at once per sweep, while actors with workers, waiting messages, image checks
or schedules are looked at on every pass (real Redis; the shipped fakes)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from jobs.service import Message
from tests.harness import CALLER, running_harness
from tests.waits import wait_until


def _recording(scheduler: Any) -> Counter[str]:
    seen: Counter[str] = Counter()
    original = scheduler.reconcile_safely

    def record(tenant: str, actor_id: str) -> None:
        seen[actor_id] += 1
        original(tenant, actor_id)

    scheduler.reconcile_safely = record
    return seen


def test_idle_actors_are_swept_not_reconciled_every_pass(settings):  # type: ignore[no-untyped-def]
    # 10 passes make a sweep; at least 100 actors per slice, so 300 actors take 3 passes
    with running_harness(settings, scheduler_tick_s=1.0, scheduler_sweep_s=10.0) as harness:
        ids = [harness.platform.create_actor(CALLER, {"image": "img-a"})["id"]
               for _ in range(300)]
        scheduler = harness.scheduler
        scheduler.acquire_lock()
        wait_until(lambda: scheduler.tick() or all(
            harness.store.get_actor("T", a)["status"] == "READY" for a in ids), 20, "READY")
        for actor_id in ids:  # let warm-started workers go, as idle ones do
            harness.store.update_actor("T", actor_id, {"warm_start": 0})
        busy = ids[0]
        harness.platform.update_actor(CALLER, busy, {"image": "img-a", "cronSchedule":
                                                     "now + 1 hour"})
        scheduler.tick()
        seen = _recording(scheduler)
        checked: Counter[str] = Counter()
        flags = harness.store.sweep_flags

        def sweep_flags(refs: list[tuple[str, str]]) -> Any:
            checked.update(actor_id for _t, actor_id in refs)
            return flags(refs)

        harness.store.sweep_flags = sweep_flags
        for _ in range(3):
            scheduler.tick()
        assert seen[busy] == 3, "a scheduled actor is looked at on every pass"
        assert not any(seen[a] for a in ids[1:]), "settled idle actors are not reconciled"
        assert sum(checked.values()) <= 3 * 101, "three slices checked, not three passes"
        for _ in range(12):
            scheduler.tick()
        assert all(checked[a] >= 1 for a in ids[1:]), "everyone checked within a sweep"
        harness.platform.send_message(CALLER, ids[7], Message("x", "str", {}))
        harness.store.r.xtrim(harness.store.keys.scheduler_wake(), maxlen=0)  # a lost wake-up
        wait_until(lambda: scheduler.tick() or seen[ids[7]] >= 1, 30,
                   "the sweep finds a message whose wake-up was lost")


def test_a_waiting_message_at_the_cap_is_served_without_a_wake(settings):  # type: ignore[no-untyped-def]
    with running_harness(settings, max_workers_per_host=1, scheduler_sweep_s=3600.0) as h:
        a, b = (h.platform.create_actor(CALLER, {"image": "img-a"})["id"] for _ in range(2))
        h.scheduler.acquire_lock()
        wait_until(lambda: h.scheduler.tick() or all(
            h.store.get_actor("T", x)["status"] == "READY" for x in (a, b)), 10, "READY")
        gate: dict[str, Any] = {}
        import threading

        from jobs.runners.fake import FakeRun

        gate["go"] = threading.Event()
        h.runner.plan = lambda spec: FakeRun(gate=gate["go"])
        first = h.platform.send_message(CALLER, a, Message("x", "str", {}))["execution_id"]
        wait_until(lambda: h.scheduler.reconcile("T", a) or h.execution(a, first)["status"]
                   == "RUNNING", 10, "a's run")
        second = h.platform.send_message(CALLER, b, Message("y", "str", {}))["execution_id"]
        h.scheduler.reconcile("T", b)  # at the cap: b waits, and is remembered
        assert ("T", b) in h.scheduler.attention
        gate["go"].set()
        wait_until(lambda: h.scheduler.tick() or h.execution(b, second)["status"]
                   == "COMPLETE", 30, "b served by passes alone, no wake-up needed")


def test_workers_placed_from_another_host_are_watched_after_a_takeover(settings):  # type: ignore[no-untyped-def]
    """A standby taking over sees, on its first full pass, workers the old scheduler placed
    on its own host; their actors stay on its every pass, so a dead one is recovered at
    once, not a sweep later."""
    from tests.harness import register_worker

    with running_harness(settings, scheduler_sweep_s=3600.0) as harness:
        actor = harness.platform.create_actor(CALLER, {"image": "img-a"})["id"]
        harness.scheduler.acquire_lock()
        wait_until(lambda: harness.scheduler.tick() or harness.store.get_actor(
            "T", actor)["status"] == "READY", 10, "READY")
        harness.store.update_actor("T", actor, {"warm_start": 0})
        register_worker(harness.store, "T", actor, "elsewhere", ttl_s=1.0)  # never beats
        harness.scheduler.close()  # the old one steps down (its lock released)
        successor = type(harness.scheduler)(harness.platform.settings, harness.store,
                                            harness.runner, harness.scheduler.placer,
                                            harness.platform.logs)
        assert successor.acquire_lock()
        successor.tick()  # its first, full pass
        assert ("T", actor) in successor.attention
        wait_until(lambda: successor.tick() or not [
            w for w in harness.store.workers("T", actor) if w["id"] == "elsewhere"], 15,
            "the dead worker recovered by passes alone")


def test_a_deleted_actor_stops_counting_and_no_wake_up_is_lost(settings):  # type: ignore[no-untyped-def]
    """From an attack round: a deleted actor's workers stayed in the quota count for good;
    wake-ups sent while the scheduler was not blocked on the stream were never read."""
    with running_harness(settings, user_max_workers=1, scheduler_sweep_s=3600.0) as h:
        scheduler = h.scheduler
        scheduler.acquire_lock()
        first = h.platform.create_actor(CALLER, {"image": "img-a"})["id"]
        wait_until(lambda: scheduler.tick() or _has_worker(h, first), 10, "a worker")
        h.platform.delete_actor(CALLER, first)
        scheduler.reconcile("T", first)
        assert ("T", first) not in scheduler.held
        second = h.platform.create_actor(CALLER, {"image": "img-a"})["id"]
        wait_until(lambda: scheduler.tick() or h.store.get_actor("T", second)["status"]
                   == "READY", 10, "READY")
        h.platform.send_message(CALLER, second, Message("x", "str", {}))
        # the scheduler is busy elsewhere (not blocked on the stream) when it is sent
        woken = scheduler.wait_for_wake(0.5)
        assert ("T", second) in woken, "read from where the stream stood, not from '$'"
        wait_until(lambda: scheduler.reconcile("T", second) or _has_worker(h, second), 10,
                   "the owner's quota is free again")


def _has_worker(harness: Any, actor_id: str) -> bool:
    return bool(harness.store.workers("T", actor_id))
