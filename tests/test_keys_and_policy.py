import json
from typing import Any

import pytest

from jobs.errors import ValidationError
from jobs.keys import Keys
from jobs.lifecycle import idle_limit_s, may_leave_idle, retry_delays
from jobs.status import ExecutionStatus, IllegalTransition, can_move, check_move
from scheduler.policy import (
    ActorLoad,
    fair_share,
    idle_to_reclaim,
    workers_to_start,
)


def _tag(key: str) -> str:
    return key[key.index("{"):key.index("}") + 1]


def test_every_key_of_an_actor_shares_its_hash_tag():
    keys = Keys("abaco")
    actor_keys = [keys.actor("T", "a1"), keys.inbox("T", "a1"), keys.queued("T", "a1"),
                  keys.execution("T", "a1", "e1"), keys.execution_logs("T", "a1", "e1"),
                  keys.state("T", "a1"), keys.workers("T", "a1"), keys.heartbeat("T", "a1", "w")]
    assert {_tag(k) for k in actor_keys} == {"{T/a1}"}
    assert all(k.startswith("abaco:T:") for k in actor_keys)


@pytest.mark.parametrize("bad", ["a:b", "a{b", "a}b", "", "a b", "x" * 200])
def test_ids_that_could_break_keys_are_refused(bad):
    with pytest.raises(ValidationError, match="actor_id"):
        Keys("abaco").actor("T", bad)


def _load(**fields):
    base = {"status": "READY", "stateless": True, "queued": 0, "busy": 0, "alive_current": 0,
            "alive_total": 0, "min_workers": 0, "max_workers": 4, "requested": 0}
    base.update(fields)
    return ActorLoad(**base)


@pytest.mark.parametrize("fields, capacity, expected", [
    ({"queued": 3}, 100, 3),                                    # scale up on backlog
    ({"queued": 10}, 100, 4),                                   # at most maxWorkers
    ({"queued": 10}, 2, 2),                                     # the per-host cap
    ({"queued": 0}, 100, 0),                                    # nothing to do: none
    ({"queued": 3, "busy": 1, "alive_current": 2, "alive_total": 2}, 100, 2),
    ({"min_workers": 2}, 100, 2),                               # minWorkers kept warm
    ({"requested": 3, "alive_current": 1, "alive_total": 1}, 100, 2),
    ({"status": "SUBMITTED", "queued": 5}, 100, 0),
    ({"status": "ERROR", "queued": 5}, 100, 0),
    ({"stateless": False, "queued": 9, "min_workers": 3}, 100, 1),   # stateful: one
    ({"stateless": False, "queued": 9, "alive_current": 0, "alive_total": 1}, 100, 0),
    ({"queued": 2, "alive_current": 0, "alive_total": 2}, 100, 2),   # update: new first
])
def test_workers_to_start(fields, capacity, expected):
    assert workers_to_start(_load(**fields), capacity) == expected


@pytest.mark.parametrize("hints, expected", [([], 300.0), (["sync"], 900.0), (["x"], 300.0)])
def test_sync_hint_keeps_a_worker_warm_longer(hints, expected):
    assert idle_limit_s(hints, 300.0, 900.0) == expected


def test_idle_workers_leave_only_above_min_workers():
    assert may_leave_idle(alive=2, min_workers=1)
    assert not may_leave_idle(alive=1, min_workers=1)
    assert retry_delays(3) == [0.5, 1.0]
    assert retry_delays(1) == []


@pytest.mark.parametrize("before, after, legal", [
    ("SUBMITTED", "RUNNING", True), ("SUBMITTED", "COMPLETE", True),
    ("SUBMITTED", "ERROR", True), ("RUNNING", "COMPLETE", True), ("RUNNING", "ERROR", True),
    ("RUNNING", "SUBMITTED", False), ("RUNNING", "RUNNING", False),
    ("COMPLETE", "RUNNING", False), ("ERROR", "COMPLETE", False), ("COMPLETE", "ERROR", False),
])
def test_the_execution_table_allows_only_forward_moves(before, after, legal):
    assert can_move(before, after) is legal
    if not legal:
        with pytest.raises(IllegalTransition):
            check_move(before, after)


def test_the_scripts_get_the_same_table_as_python(store: Any):
    """The scripts' ``may_move``, run by Redis itself, for every pair of statuses."""
    from jobs.inbox_lua import PRELUDE

    statuses = [str(s) for s in ExecutionStatus]
    pairs = [(a, b) for a in statuses for b in statuses]
    script = PRELUDE + """
local out = {}
for i = 1, #ARGV, 2 do out[#out + 1] = may_move(ARGV[i], ARGV[i + 1]) and 1 or 0 end
return out"""
    argv = [json.dumps(status) for pair in pairs for status in pair]
    answers = store.r.eval(script, 0, *argv)
    assert answers == [int(can_move(a, b)) for a, b in pairs]
    assert sum(answers) == 5, "SUBMITTED to 3, RUNNING to 2, the final ones to none"



def test_idle_workers_are_reclaimed_round_robin_for_starving_actors():
    idle = {"a": ["a1", "a2", "a3"], "b": ["b1"], "c": []}
    assert idle_to_reclaim(3, idle) == ["a1", "b1", "a2"]
    assert idle_to_reclaim(0, idle) == []
    assert sorted(idle_to_reclaim(10, {"a": ["a1"], "b": ["b1"]})) == ["a1", "b1"]


def test_a_busy_host_is_shared_fairly():
    assert fair_share(8, 100) == 1
    assert fair_share(8, 2) == 4
    assert fair_share(8, 0) == 8
