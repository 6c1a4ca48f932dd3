"""Log expiry (logEx), record retention, paging over many executions, and what deleting
an actor leaves behind: the real scheduler and worker (fakes for the engine and
processes) on real Redis and the S3 endpoint."""

from __future__ import annotations

import pytest

from jobs.errors import Gone, NotFound
from jobs.service import Message
from jobs.settings import Settings
from tests.harness import CALLER, running_harness
from tests.waits import wait_until


def _complete(harness, actor_id: str, count: int) -> list[str]:  # type: ignore[no-untyped-def]
    eids = [harness.send(actor_id, f"m{i}") for i in range(count)]
    harness.scheduler.reconcile("T", actor_id)
    wait_until(lambda: all(harness.execution(actor_id, e)["status"] == "COMPLETE"
                           for e in eids), 20, "the executions")
    return eids


def test_logs_expire_after_log_ex_and_the_logs_route_says_so(settings: Settings):
    with running_harness(settings) as harness:
        actor = harness.actor(log_ex=1)
        [eid] = _complete(harness, actor["id"], 1)
        assert harness.platform.logs.get_logs("T", actor["id"], eid)
        harness.platform.get_logs(CALLER, actor["id"], eid)

        def expired() -> bool:
            harness.scheduler.tick()
            return bool(harness.execution(actor["id"], eid).get("logs_expired"))

        wait_until(expired, 10, "the logs to expire")
        with pytest.raises(NotFound):
            harness.platform.logs.get_logs("T", actor["id"], eid)
        with pytest.raises(Gone, match="expired"):
            harness.platform.get_logs(CALLER, actor["id"], eid)
        assert harness.execution(actor["id"], eid)["status"] == "COMPLETE"  # the record stays


def test_records_beyond_the_kept_count_go_with_their_logs(settings: Settings):
    with running_harness(settings, execution_keep_count=3, execution_settle_s=0) as harness:
        actor = harness.actor()
        eids = _complete(harness, actor["id"], 5)
        record = harness.store.get_execution("T", actor["id"], eids[-1])
        assert "msg" not in record and "env" not in record, "the message is not kept"
        harness.scheduler.tick()
        listing = harness.platform.list_executions(CALLER, actor["id"])
        kept = [e["id"] for e in listing["executions"]]
        assert listing["total_executions"] == 3 and set(kept) <= set(eids)
        gone = set(eids) - set(kept)
        assert len(gone) == 2
        harness.scheduler.tick()
        for eid in gone:
            with pytest.raises(NotFound):
                harness.platform.logs.get_logs("T", actor["id"], eid)
        assert listing["total_runtime"] >= 0 and listing["total_cpu"] >= 0


def test_deleting_an_actor_deletes_its_logs_in_the_background(settings: Settings):
    with running_harness(settings) as harness:
        actor = harness.actor()
        eids = _complete(harness, actor["id"], 2)
        harness.platform.delete_actor(CALLER, actor["id"])
        harness.scheduler.tick()
        for eid in eids:
            with pytest.raises(NotFound):
                harness.platform.logs.get_logs("T", actor["id"], eid)


def test_paging_ten_thousand_executions_reads_only_the_page(settings: Settings):
    with running_harness(settings) as harness:
        actor = harness.actor()
        platform, r = harness.platform, harness.store.r
        for i in range(10_000):
            platform.send_message(CALLER, actor["id"], Message(f"m{i}", "str", {}))

        def hgetall_calls() -> int:
            stats = r.info("commandstats").get("cmdstat_hgetall", {})
            return int(stats.get("calls", 0))

        before = hgetall_calls()
        page = platform.list_executions(CALLER, actor["id"], offset=9_990, limit=5)
        assert hgetall_calls() - before <= 5 + 3  # the page, the actor, its totals, no more
        assert page["total_executions"] == 10_000 and len(page["executions"]) == 5
