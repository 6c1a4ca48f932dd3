"""The Redis store against a real Redis."""

import time

from jobs.keys import INBOX_GROUP
from jobs.store import Store


def _actor(actor_id="a1"):
    return {"id": actor_id, "tenant": "T", "image": "img", "status": "READY", "revision": 1,
            "owner": "u", "create_time": "2026-01-01T00:00:00.000000Z"}


def _execution(eid, actor_id="a1"):
    return {"id": eid, "actor_id": actor_id, "tenant": "T", "status": "SUBMITTED",
            "dispatched": False, "msg": "hi"}


def test_posting_a_message_records_and_queues_it_together(store: Store):
    store.create_actor(_actor())
    store.post_message(_execution("e1"), binary=b"\x00\x01")
    assert store.get_execution("T", "a1", "e1")["status"] == "SUBMITTED"
    assert store.queued_ids("T", "a1") == ["e1"]
    assert store.get_binary("T", "a1", "e1") == b"\x00\x01"
    entries = store.r.xrange(store.keys.inbox("T", "a1"))
    assert [fields[b"eid"] for _id, fields in entries] == [b"e1"]
    wake = store.r.xrange(store.keys.scheduler_wake())
    assert wake and wake[-1][1][b"actor"] == b"T/a1"


def test_a_message_is_claimed_once_and_a_purged_one_never(store: Store):
    store.create_actor(_actor())
    store.post_message(_execution("e1"))
    store.post_message(_execution("e2"))
    assert store.claim("T", "a1", "e1", "w1") is True
    assert store.claim("T", "a1", "e1", "w2") is False
    record = store.get_execution("T", "a1", "e1")
    assert record["worker_id"] == "w1" and record["dispatched"] is True
    assert store.drop_queued("T", "a1", "e2", "purged") is True
    assert store.claim("T", "a1", "e2", "w1") is False
    assert store.get_execution("T", "a1", "e2")["status"] == "ERROR"
    assert store.drop_queued("T", "a1", "e1", "too late") is False


def test_the_inbox_has_its_consumer_group(store: Store):
    store.create_actor(_actor())
    groups = store.r.xinfo_groups(store.keys.inbox("T", "a1"))
    assert [g["name"] for g in groups] == [INBOX_GROUP.encode()]


def test_deleting_an_actor_leaves_no_key_behind(store: Store):
    store.create_actor(_actor())
    store.create_actor(_actor("a2"))
    store.post_message(_execution("e1"))
    store.append_log("T", "a1", "e1", b"log")
    store.set_state("T", "a1", {"x": 1})
    assert store.delete_actor("T", "a1") == ["e1"]
    left = [k.decode() for k in store.r.scan_iter(match=f"{store.keys.prefix}:*")]
    assert not [k for k in left if "{T/a1}" in k]
    assert [a["id"] for a in store.list_actors("T")] == ["a2"]


def test_final_records_publish_an_event(store: Store):
    store.create_actor(_actor())
    store.post_message(_execution("e1"))
    before = store.last_event_id("T", "a1")
    store.finish_execution("T", "a1", "e1", {"status": "COMPLETE"})
    events = store.wait_events("T", "a1", before, 1.0)
    assert [(e["execution_id"], e["status"]) for _id, e in events] == [("e1", "COMPLETE")]


def test_a_blocking_wait_longer_than_redis_py_default_timeout_is_not_an_error(store: Store):
    store.create_actor(_actor())
    started = time.monotonic()
    assert store.wait_events("T", "a1", store.last_event_id("T", "a1"), 6.0) == []
    assert time.monotonic() - started >= 5.9
