"""The fast harness: the real worker and scheduler on real Redis, with the shipped fakes
(FakeRunner for the engine, MemoryPlacer for worker processes)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from jobs.runners.fake import FakeRunner
from jobs.service import Caller, Message, Platform
from jobs.settings import Settings
from jobs.worker import Worker
from scheduler.loop import Scheduler

CALLER = Caller("alice", "T", frozenset({"admin"}))


@dataclass
class Harness:
    platform: Platform
    runner: FakeRunner
    scheduler: Scheduler

    @property
    def store(self):  # type: ignore[no-untyped-def]
        return self.platform.store

    def actor(self, **fields: Any) -> dict[str, Any]:
        """A READY actor (its image checked by the scheduler, as in production)."""
        actor = self.platform.create_actor(CALLER, {"image": "img-a", **fields})
        self.scheduler.acquire_lock()
        self.scheduler.reconcile("T", actor["id"])   # starts the image check
        from tests.waits import wait_until
        wait_until(lambda: self._checked(actor["id"]), 10, "the image check")
        return self.store.get_actor("T", actor["id"])

    def _checked(self, actor_id: str) -> bool:
        self.scheduler.reconcile("T", actor_id)
        return self.store.get_actor("T", actor_id)["status"] != "SUBMITTED"

    def send(self, actor_id: str, body: str = "hello") -> str:
        reply = self.platform.send_message(CALLER, actor_id, Message(body, "str", {}))
        return str(reply["execution_id"])

    def execution(self, actor_id: str, eid: str) -> dict[str, Any]:
        return self.store.get_execution("T", actor_id, eid)

    def manual_worker(self, actor: dict[str, Any], worker_id: str | None = None) -> Worker:
        """A worker registered by the scheduler but driven step by step by the test."""
        self.scheduler.acquire_lock()
        record_id = worker_id or f"w{len(self.store.workers('T', actor['id'])) + 1}"
        outcome = self.store.inbox.register(
            self.scheduler.epoch, "T", actor["id"],
            {"id": record_id, "status": "REQUESTED", "revision": int(actor["revision"]),
             "host_id": "memory-host"},
            self.platform.settings.heartbeat_ttl_s, -1, int(actor["revision"]))
        assert outcome == "ok", outcome
        worker = Worker(self.platform.settings, "T", actor["id"], record_id, self.store,
                        self.platform.logs, self.platform.secrets, self.runner)
        assert worker.activate()
        return worker


def fast_settings(settings: Settings) -> Settings:
    return settings.replace(s3_bucket=f"b-{settings.prefix}", heartbeat_ttl_s=1.0,
                            worker_startup_grace_s=3.0, inbox_block_s=0.2,
                            backoff_first_s=0.05, backoff_max_s=0.5, outage_patience_s=5.0,
                            start_attempts=2, scheduler_tick_s=0.5, drain_timeout_s=5.0)


def register_worker(store, tenant: str, actor_id: str, worker_id: str,  # type: ignore[no-untyped-def]
                    ttl_s: float = 30.0) -> None:
    """Register a worker as the scheduler would, without taking the scheduler's lock: the
    epoch used is the one the actor last saw, so no running scheduler is fenced off."""
    actor = store.get_actor(tenant, actor_id)
    outcome = store.inbox.register(int(actor.get("fence") or 0), tenant, actor_id,
                                   {"id": worker_id, "status": "REQUESTED",
                                    "revision": int(actor["revision"]), "host_id": "tests"},
                                   ttl_s, -1, int(actor["revision"]))
    assert outcome == "ok", outcome


@contextlib.contextmanager
def running_harness(settings: Settings, runner: Any = None,
                    **changes: Any) -> Iterator[Harness]:
    """A harness on fast settings with ``changes``: the real scheduler and workers with
    the shipped fakes; everything stopped at the end, whatever happened."""
    from jobs.placers.memory import MemoryPlacer

    fast = fast_settings(settings).replace(**changes)
    platform = Platform.from_settings(fast)
    platform.logs.ensure_bucket()
    runner = runner or FakeRunner()
    placer = MemoryPlacer(fast, platform.store, runner, platform.logs, platform.secrets)
    scheduler = Scheduler(fast, platform.store, runner, placer, platform.logs)
    try:
        yield Harness(platform, runner, scheduler)
    finally:
        if isinstance(runner, FakeRunner):
            runner.lose_everything()
        scheduler.stopping.set()
        placer.drain(2)
        scheduler.close()
