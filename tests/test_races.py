"""Races and crashes, replayed deterministically with the shipped fakes."""

from __future__ import annotations

import threading

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
