"""Results: the Abaco SDK's in-actor helpers (agavepy 0.9.5, in a real Python image) send
through /_abaco_results.sock; callers read them from the results route and from a
synchronous message. Real Docker, Redis, S3 and OpenBao."""

from __future__ import annotations

import pickle
import threading
from typing import Any

import pytest

from jobs.runners.docker import DockerRunner
from jobs.service import Caller, Message, Platform
from jobs.settings import Settings
from jobs.worker import Worker
from tests.harness import register_worker
from tests.waits import wait_until

CALLER = Caller("alice", "T")


@pytest.fixture
def platform(settings: Settings, images: list[str], python_image: str) -> Platform:
    platform = Platform.from_settings(settings)
    platform.logs.ensure_bucket()
    return platform


def _ready(platform: Platform, image: str, caller: Caller = CALLER) -> dict[str, Any]:
    actor = platform.create_actor(caller, {"image": image})
    platform.store.update_actor(caller.tenant, actor["id"], {"status": "READY"})
    return platform.store.get_actor(caller.tenant, actor["id"])


def _worker(platform: Platform, actor_id: str, tenant: str = "T") -> Worker:
    register_worker(platform.store, tenant, actor_id, "w1")
    worker = Worker(platform.settings, tenant, actor_id, "w1", platform.store, platform.logs,
                    platform.secrets, DockerRunner(platform.settings))
    assert worker.activate()
    return worker


def _serve_one(worker: Worker) -> None:
    entry = worker._next_entry()
    assert entry is not None
    worker.handle(*entry)


def test_agavepy_results_come_back_in_order_then_empty(platform: Platform, python_image: str):
    actor = _ready(platform, python_image)
    eid = platform.send_message(CALLER, actor["id"], Message("hi", "str", {}))["execution_id"]
    _serve_one(_worker(platform, actor["id"]))
    record = platform.store.get_execution("T", actor["id"], eid)
    assert record["status"] == "COMPLETE" and record["exit_code"] == 0, record
    assert platform.next_result(CALLER, actor["id"], eid) == b"bytes for hi"
    python_result = platform.next_result(CALLER, actor["id"], eid)
    assert python_result is not None
    assert pickle.loads(python_result) == {"answer": 42, "actor": actor["id"]}
    assert platform.next_result(CALLER, actor["id"], eid) is None
    ttl = platform.store.r.ttl(platform.store.keys.execution_results("T", actor["id"], eid))
    assert ttl == -2 or 0 < ttl <= platform.settings.results_ttl_s


def test_a_synchronous_message_answers_with_the_first_result(settings: Settings,
                                                             platform: Platform,
                                                             python_image: str):
    from api.app import create_app

    client = create_app(settings, platform).test_client()
    anonymous = Caller("anonymous", settings.default_tenant)  # auth = none
    actor = _ready(platform, python_image, anonymous)
    worker = _worker(platform, actor["id"], anonymous.tenant)
    replies: list[Any] = []
    caller = threading.Thread(target=lambda: replies.append(client.post(
        f"/actors/{actor['id']}/messages?_abaco_synchronous=true", data={"message": "sync"})))
    caller.start()
    entry = wait_until(lambda: worker._next_entry(), 30, "the synchronous message")
    worker.handle(*entry)
    caller.join(60)
    assert replies, "the synchronous call answered"
    reply = replies[0]
    assert reply.status_code == 200 and reply.mimetype == "application/octet-stream"
    assert reply.data == b"bytes for sync"


def test_an_execution_posts_a_result_with_its_own_token_only(platform: Platform):
    from api.app import create_app
    from jobs.auth import Caller as AuthCaller
    from jobs.auth import ExecutionGrant

    actor = _ready(platform, "abaco-test-echo")
    eid = platform.send_message(CALLER, actor["id"], Message("m", "str", {}))["execution_id"]
    own = AuthCaller("alice", "T", frozenset({"user"}),
                     execution=ExecutionGrant(actor["id"], eid))
    platform.add_result(own, actor["id"], eid, b"posted")
    assert platform.next_result(CALLER, actor["id"], eid) == b"posted"
    from jobs.errors import ValidationError
    with pytest.raises(ValidationError):
        platform.add_result(own, actor["id"], eid, b"")
    other = platform.send_message(CALLER, actor["id"], Message("m", "str", {}))["execution_id"]
    from jobs.errors import PermissionDenied as Denied
    with pytest.raises(Denied):
        platform.next_result(own, actor["id"], other)  # another execution's results
    from jobs.errors import PermissionDenied
    with pytest.raises(PermissionDenied):
        platform.add_result(CALLER, actor["id"], eid, b"not by the owner")
    assert create_app  # the route is the same call (tests/test_security covers tokens)


def test_the_logs_of_a_silent_run_do_not_wait_for_s3(platform: Platform,
                                                                   monkeypatch):
    """A run that printed nothing has no live log; while its logs wait for their copy
    to S3, a synchronous reply and a read of its logs give the empty log at once, not a
    read of an S3 object that may not be there yet (which cost a prewarmed run a sixth
    of its time)."""
    from jobs.errors import BackendUnavailable

    actor = _ready(platform, "abaco-test-noop")
    eid = platform.send_message(CALLER, actor["id"], Message("m", "str", {}))["execution_id"]
    worker = _worker(platform, actor["id"])

    def s3_down(*_args: Any, **_kwargs: Any) -> None:
        raise BackendUnavailable("s3 is down (injected)")

    monkeypatch.setattr(worker.logs, "put", s3_down)  # the copy waits: the logs stay pending
    _serve_one(worker)
    assert platform.store.get_execution("T", actor["id"], eid)["status"] == "COMPLETE"
    assert ("T", actor["id"], eid) in platform.store.logs_pending()

    def s3_read(*_args: Any, **_kwargs: Any) -> bytes:
        raise AssertionError("the reply asked S3 for the logs of a silent run")

    monkeypatch.setattr(platform.logs, "get_logs", s3_read)
    assert platform.synchronous_reply(CALLER, actor["id"], eid) == (b"", "text/plain")
    assert platform.get_logs(CALLER, actor["id"], eid) == ""


def test_the_log_of_an_ended_run_is_read_from_s3_once(platform: Platform, monkeypatch):
    """Once copied to S3 a log never changes: later reads are answered from memory,
    while what can still happen to it (its expiry, its execution's removal) is read
    from the record on every request."""
    from jobs.errors import Gone, NotFound

    actor = _ready(platform, "abaco-test-shell-env")
    eid = platform.send_message(CALLER, actor["id"], Message("kept", "str", {}))["execution_id"]
    _serve_one(_worker(platform, actor["id"]))
    wait_until(lambda: ("T", actor["id"], eid) not in platform.store.logs_pending(), 30,
               "the logs copied to S3")
    read = platform.logs.get_logs
    reads: list[str] = []

    def counted(tenant: str, actor_id: str, execution_id: str) -> bytes:
        reads.append(execution_id)
        return read(tenant, actor_id, execution_id)

    monkeypatch.setattr(platform.logs, "get_logs", counted)
    first = platform.get_logs(CALLER, actor["id"], eid)
    assert "Contents of MSG: kept" in first
    assert [platform.get_logs(CALLER, actor["id"], eid) for _ in range(3)] == [first] * 3
    assert reads == [eid], "S3 was read once"
    with pytest.raises(NotFound):  # another tenant's caller sees nothing of it
        platform.get_logs(Caller("alice", "OTHER"), actor["id"], eid)
    platform.store.logs_expired("T", actor["id"], eid, "2026-01-01T00:00:00.000000Z")
    with pytest.raises(Gone, match="expired"):
        platform.get_logs(CALLER, actor["id"], eid)


def test_kept_logs_stay_within_their_bytes():
    import sys

    import orjson

    from jobs.log_cache import ENTRY_BYTES, FinalLogs, _cost

    one = _cost("a" * 100)
    kept = FinalLogs(max_bytes=4 * one + one // 2)  # four such logs, each under a quarter
    assert _cost("\U0001f600" + "a" * 99) > kept.max_bytes // 4, "4 bytes a character"
    for text in ("\u00e9" * 1000, "\u4e2d" * 1000, "\U0001f600" * 1000, "a" * 1000):
        read = text.encode().decode()  # a log as read from S3: charged when kept
        charged = _cost(read) - ENTRY_BYTES
        orjson.dumps({"logs": read})  # replied: leaves its UTF-8 copy on the string
        assert sys.getsizeof(read) <= charged, text[0]
    kept.put(("T", "A", "wide", "t"), "\U0001f600" + "a" * 99)
    assert kept.get(("T", "A", "wide", "t")) is None, "over a quarter in memory: not kept"
    kept.put(("T", "A", "1", "t"), "a" * 100)
    kept.put(("T", "A", "2", "t"), "b" * 100)
    for n in range(3, 7):
        assert kept.get(("T", "A", "1", "t")) == "a" * 100  # read last: kept longest
        kept.put(("T", "A", str(n), "t"), "x" * 100)
    assert kept.get(("T", "A", "1", "t")) == "a" * 100
    assert kept.get(("T", "A", "2", "t")) is None, "the least recently read went first"
    assert sum(kept.get(("T", "A", str(n), "t")) is not None for n in range(1, 7)) == 4
    empties = FinalLogs(max_bytes=10 * _cost(""))
    for n in range(1000):  # a silent run's log is empty, and still costs its entry
        empties.put(("T", "A", str(n), "t"), "")
    assert len(empties._entries) <= 10
    nothing = FinalLogs(0)
    nothing.put(("T", "A", "1", "t"), "")
    assert nothing.get(("T", "A", "1", "t")) is None, "0 keeps nothing"
