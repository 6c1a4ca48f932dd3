"""Following a log as it grows: ``GET .../logs?follow=true``.

The units drive the follower over real Redis and S3 with no worker (the test plays
the worker's appends), so each wake-up is deterministic; the end-to-end tests follow
a real run under ``abaco up``.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import requests

from jobs.log_follow import RECHECK_S, LogFollower
from jobs.logstore import TRUNCATION_MARKER
from jobs.settings import Settings
from jobs.tokens import TokenSigner
from tests.harness import CALLER
from tests.http_helpers import execution, ready_actor, result
from tests.waits import wait_until

FINAL = ("COMPLETE", "ERROR")


class Collector:
    """Runs a follower in a thread and keeps what it yields, and when it ended."""

    def __init__(self, follower: Any) -> None:
        self.chunks: list[bytes] = []
        self.ended_at: float | None = None
        self.thread = threading.Thread(target=self._run, args=(follower,), daemon=True)
        self.thread.start()

    def _run(self, follower: Any) -> None:
        for chunk in follower:
            self.chunks.append(chunk)
        self.ended_at = time.monotonic()

    @property
    def text(self) -> bytes:
        return b"".join(self.chunks)


@pytest.fixture
def queued(harness):  # type: ignore[no-untyped-def]
    """An actor with one message that no worker takes: the test writes its log."""
    actor = harness.actor()
    return harness, actor["id"], harness.send(actor["id"])


def test_follower_passes_on_each_append_and_ends_with_the_execution(queued):
    harness, actor_id, eid = queued
    store = harness.store
    follow = Collector(harness.platform.follow_logs(CALLER, actor_id, eid))
    store.append_log("T", actor_id, eid, b"first line\n")
    wait_until(lambda: follow.text == b"first line\n", 3, "the first line")
    store.append_log("T", actor_id, eid, b"second ")
    store.append_log("T", actor_id, eid, b"line\n")
    wait_until(lambda: follow.text == b"first line\nsecond line\n", 3, "the second line")
    assert follow.ended_at is None
    cancelled_at = time.monotonic()
    harness.platform.cancel_execution(CALLER, actor_id, eid)
    wait_until(lambda: follow.ended_at is not None, 3, "the follower to end")
    assert follow.ended_at is not None
    # Woken by the actor's event, not by the safety-net recheck.
    assert follow.ended_at - cancelled_at < RECHECK_S
    assert follow.text == b"first line\nsecond line\n"


def test_a_token_cut_between_two_appends_is_still_masked(queued):
    harness, actor_id, eid = queued
    token = TokenSigner(harness.platform.settings).mint(
        "alice", "T", 60, actor_id, eid).encode()
    follow = Collector(harness.platform.follow_logs(CALLER, actor_id, eid))
    half = len(token) // 2
    harness.store.append_log("T", actor_id, eid, b"token=" + token[:half])
    harness.store.append_log("T", actor_id, eid, token[half:] + b"\n")
    wait_until(lambda: follow.text.endswith(b"\n"), 3, "the token's line")
    harness.platform.cancel_execution(CALLER, actor_id, eid)
    wait_until(lambda: follow.ended_at is not None, 3, "the follower to end")
    assert token not in follow.text and token[:half] not in follow.text
    assert follow.text.startswith(b"token=")


def test_the_rest_comes_from_s3_once_the_live_copy_is_gone(queued):
    harness, actor_id, eid = queued
    platform = harness.platform
    platform.logs.ensure_bucket()
    follow = Collector(platform.follow_logs(CALLER, actor_id, eid))
    harness.store.append_log("T", actor_id, eid, b"part one\n")
    wait_until(lambda: follow.text == b"part one\n", 3, "the live part")
    platform.logs.put("T", actor_id, eid, b"part one\npart two\n", {"id": eid})
    harness.store.drop_live_log("T", actor_id, eid)
    platform.cancel_execution(CALLER, actor_id, eid)
    wait_until(lambda: follow.ended_at is not None, 3, "the follower to end")
    assert follow.text == b"part one\npart two\n"


def test_a_follower_ends_when_its_actor_is_deleted_mid_run(queued):
    """Found by an attack round: the execution vanished with its actor and the follower
    waited for a final status forever, holding its connections."""
    harness, actor_id, eid = queued
    follow = Collector(harness.platform.follow_logs(CALLER, actor_id, eid))
    harness.store.append_log("T", actor_id, eid, b"started\n")
    wait_until(lambda: follow.text == b"started\n", 3, "the first line")
    harness.platform.delete_actor(CALLER, actor_id)
    wait_until(lambda: follow.ended_at is not None, RECHECK_S + 3, "the follower to end")
    assert follow.text == b"started\n"


def test_a_log_over_the_limit_ends_with_the_marker_as_in_s3(queued):
    """Found by an attack round: the live copy holds one byte over the limit, and a
    follower passed it on and ended mid-line, with no word of the cut."""
    harness, actor_id, eid = queued
    follower = LogFollower(harness.store, harness.platform.logs, "T", actor_id, eid, limit=12)
    follow = Collector(follower)
    harness.store.append_log("T", actor_id, eid, b"line one\n")
    wait_until(lambda: follow.text == b"line one\n", 3, "the first line")
    harness.store.append_log("T", actor_id, eid, b"line two\nline three\n")
    harness.platform.cancel_execution(CALLER, actor_id, eid)
    wait_until(lambda: follow.ended_at is not None, 3, "the follower to end")
    assert follow.text == b"line one\nlin" + TRUNCATION_MARKER.format(limit=12).encode()


# -- end to end, under abaco up ------------------------------------------------------

@pytest.fixture(scope="module")
def base(api_stack: Settings) -> str:
    return f"http://127.0.0.1:{api_stack.api_port}/actors"


def test_lines_arrive_while_the_run_goes_on(base: str):
    actor = ready_actor(base, image="abaco-test-sleep", defaultEnvironment={"SLEEP": "3"})
    sent = result(requests.post(f"{base}/{actor['id']}/messages", data={"message": "x"},
                                timeout=10))
    eid = sent["executionId"]
    url = f"{base}/{actor['id']}/executions/{eid}/logs"
    with requests.get(url, params={"follow": "true"}, stream=True, timeout=30) as reply:
        assert reply.status_code == 200
        assert reply.headers["Content-Type"].startswith("text/plain")
        lines = reply.iter_lines()
        assert next(lines) == b"sleeping 3"
        assert execution(base, actor["id"], eid)["status"] not in FINAL
        rest = list(lines)
    assert rest == [b"done"]
    record = execution(base, actor["id"], eid)
    assert record["status"] == "COMPLETE"
    logs = result(requests.get(url, timeout=10))["logs"]
    assert logs == "sleeping 3\ndone\n"


def test_following_a_finished_execution_gives_its_whole_log(base: str):
    actor = ready_actor(base)
    sent = result(requests.post(f"{base}/{actor['id']}/messages", data={"message": "hi"},
                                timeout=10))
    eid = sent["executionId"]
    wait_until(lambda: execution(base, actor["id"], eid)["status"] in FINAL, 60, "the end")
    url = f"{base}/{actor['id']}/executions/{eid}/logs"
    followed = requests.get(url, params={"follow": "1"}, timeout=10)
    assert followed.status_code == 200
    assert followed.text == result(requests.get(url, timeout=10))["logs"]
    assert "Contents of MSG: hi" in followed.text


def test_follow_refusals_are_ordinary_error_replies(base: str):
    actor = ready_actor(base)
    missing = requests.get(f"{base}/{actor['id']}/executions/nosuchexec/logs",
                           params={"follow": "true"}, timeout=10)
    assert missing.status_code == 404 and missing.json()["status"] == "error"
    odd = requests.get(f"{base}/{actor['id']}/executions/nosuchexec/logs",
                       params={"follow": "maybe"}, timeout=10)
    assert odd.status_code == 400 and "follow" in odd.json()["message"]
