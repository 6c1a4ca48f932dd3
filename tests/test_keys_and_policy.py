import pytest

from jobs.errors import ValidationError
from jobs.keys import Keys
from scheduler.policy import recovery_action, workers_to_start


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


@pytest.mark.parametrize("status, queued, alive, stateless, minimum, expected", [
    ("READY", 3, 0, True, 0, 1),
    ("READY", 0, 0, True, 0, 0),
    ("READY", 3, 1, True, 0, 0),
    ("READY", 0, 0, True, 2, 1),
    ("SUBMITTED", 5, 0, True, 0, 0),
    ("ERROR", 5, 0, True, 0, 0),
    ("READY", 9, 0, False, 3, 1),
    ("READY", 9, 1, False, 0, 0),
])
def test_workers_to_start(status, queued, alive, stateless, minimum, expected):
    assert workers_to_start(status, queued, alive, stateless=stateless,
                            min_workers=minimum) == expected


@pytest.mark.parametrize("record, action", [
    (None, "ack"),
    ({"status": "COMPLETE", "dispatched": True}, "ack"),
    ({"status": "ERROR"}, "ack"),
    ({"status": "SUBMITTED", "dispatched": False}, "requeue"),
    ({"status": "SUBMITTED", "dispatched": True}, "fail"),
    ({"status": "RUNNING", "dispatched": True}, "fail"),
])
def test_recovery_never_runs_a_started_message_twice(record, action):
    assert recovery_action(record) == action
