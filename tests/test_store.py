"""The Redis store against a real Redis."""

import time

import pytest

from jobs.errors import Conflict, NotFound
from jobs.keys import INBOX_GROUP
from jobs.status import ExecutionStatus
from jobs.store import Store
from tests.harness import register_worker


def _actor(actor_id="a1"):
    return {"id": actor_id, "tenant": "T", "image": "img", "status": "READY", "revision": 1,
            "owner": "u", "create_time": "2026-01-01T00:00:00.000000Z"}


def _execution(eid, actor_id="a1"):
    return {"id": eid, "actor_id": actor_id, "tenant": "T", "status": "SUBMITTED",
            "worker_id": None, "msg": "hi", "message_received_time": "2026-01-01T00:00:00.000000Z"}


def _read(store: Store, worker_id: str) -> tuple[str, str]:
    entry = store.inbox.read("T", "a1", worker_id, 100)
    assert entry is not None
    return entry


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


def test_a_post_after_redis_lost_its_scripts_still_records_and_wakes(store: Store):
    """The post and the wake-up share one round trip (EVALSHA in a pipeline); a Redis
    that restarted without its scripts gets the script loaded and the post done once."""
    store.create_actor(_actor())
    store.r.script_flush()
    store.post_message(_execution("e2"))
    assert store.queued_ids("T", "a1") == ["e2"]
    posted = store.r.xrange(store.keys.inbox("T", "a1"))
    assert len(posted) == 1, "posted once"
    wakes = [w for w in store.r.xrange(store.keys.scheduler_wake())
             if w[1][b"actor"] == b"T/a1"]
    assert len(wakes) == 2, "sent again once the script had run"
    assert _stream_id(wakes[-1][0]) >= _stream_id(posted[0][0]), "the last after the post"


def _stream_id(raw: bytes) -> tuple[int, int]:
    ms, _, seq = raw.decode().partition("-")
    return int(ms), int(seq)


def test_a_message_is_claimed_once_and_a_purged_one_never(store: Store):
    store.create_actor(_actor())
    register_worker(store, "T", "a1", "w1")
    register_worker(store, "T", "a1", "w2")
    store.post_message(_execution("e1"))
    store.post_message(_execution("e2"))
    entry, eid = _read(store, "w1")
    assert eid == "e1" and store.inbox.claim("T", "a1", "w1", 1, entry, "e1") == "claimed"
    assert store.inbox.claim("T", "a1", "w2", 1, entry, "e1") == "gone"
    assert store.get_execution("T", "a1", "e1")["worker_id"] == "w1"
    assert store.drop_queued("T", "a1", "e2", "purged") is True
    entry2, _ = _read(store, "w2") if store.r.xlen(store.keys.inbox("T", "a1")) > 1 else ("", "")
    if entry2:
        assert store.inbox.claim("T", "a1", "w2", 1, entry2, "e2") == "gone"
    assert store.get_execution("T", "a1", "e2")["status"] == "ERROR"
    assert store.drop_queued("T", "a1", "e1", "too late") is False


def test_a_message_to_a_missing_or_deleting_actor_is_refused(store: Store):
    with pytest.raises(NotFound):
        store.post_message(_execution("e1"))
    store.create_actor(_actor())
    store.mark_deleting("T", "a1")
    with pytest.raises(Conflict):
        store.post_message(_execution("e1"))
    assert store.queued_ids("T", "a1") == []


def test_an_update_never_resurrects_a_deleted_actor(store: Store):
    store.create_actor(_actor())
    store.delete_actor("T", "a1")
    with pytest.raises(NotFound):
        store.update_actor("T", "a1", {"status": "READY"})
    assert not store.r.exists(store.keys.actor("T", "a1"))


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
    assert store.drop_queued("T", "a1", "e1", "done", status=ExecutionStatus.COMPLETE)
    events = store.wait_events("T", "a1", before, 1.0)
    assert [(e["execution_id"], e["status"]) for _id, e in events] == [("e1", "COMPLETE")]


def test_a_blocking_wait_longer_than_redis_py_default_timeout_is_not_an_error(store: Store):
    store.create_actor(_actor())
    started = time.monotonic()
    assert store.wait_events("T", "a1", store.last_event_id("T", "a1"), 6.0) == []
    assert time.monotonic() - started >= 5.9


def test_the_platform_id_is_made_once_per_redis_and_prefix(store: Store):
    from jobs.keys import Keys

    again = Store(store.r, Keys(store.keys.prefix))
    other = Store(store.r, Keys(store.keys.prefix + "x"))
    assert store.platform_id() == again.platform_id() != other.platform_id()
    assert len(store.platform_id()) >= 13
