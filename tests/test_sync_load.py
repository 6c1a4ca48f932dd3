"""Synchronous messages wait on Redis without holding the API: other requests answer.

A synchronous message (``_abaco_synchronous=true``) waits in the API for its
execution to end, up to ``sync_timeout_s``. On the real stack (``abaco up``)
those waits are parked greenlets, so 200 of them at once leave ``GET /actors``
answering; with one thread per call the API would answer nothing until they
came back.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import requests

from jobs.settings import Settings
from tests.waits import wait_until

CONCURRENT = 200


def test_two_hundred_synchronous_messages_leave_the_api_answering(api_stack: Settings):
    api = api_stack.api_url
    actor = requests.post(f"{api}/actors", json={"image": "abaco-test-sleep",
                                                 "name": "sync-load",
                                                 "defaultEnvironment": {"SLEEP": "0"}},
                          timeout=10)
    assert actor.status_code == 200, actor.text
    actor_id = actor.json()["result"]["id"]
    wait_until(lambda: requests.get(f"{api}/actors/{actor_id}", timeout=10).json()[
        "result"]["status"] == "READY", 60, "the actor READY")
    # Each execution sleeps far longer than sync_timeout_s, and the actor runs at most
    # maxWorkers of them: every call stays in flight until its 408 (or the cleanup).
    sleep_s = int(api_stack.sync_timeout_s * 3)
    url = f"{api}/actors/{actor_id}/messages?_abaco_synchronous=true&SLEEP={sleep_s}"
    returned = threading.Event()
    outcomes: list[int | str] = []

    def send(i: int) -> None:
        try:
            reply = requests.post(url, data={"message": str(i)},
                                  timeout=api_stack.sync_timeout_s + 30)
            outcomes.append(reply.status_code)
        except requests.RequestException as exc:
            outcomes.append(type(exc).__name__)
        finally:
            returned.set()

    def accepted() -> bool:
        """All calls reached the API: each has its execution record."""
        try:
            reply = requests.get(f"{api}/actors/{actor_id}/executions", timeout=2)
        except requests.RequestException:
            return False
        assert reply.status_code == 200, reply.text
        return bool(reply.json()["result"]["totalExecutions"] >= CONCURRENT)

    with ThreadPoolExecutor(max_workers=CONCURRENT) as pool:
        try:
            for i in range(CONCURRENT):
                pool.submit(send, i)
            wait_until(accepted, api_stack.sync_timeout_s / 2,
                       f"{CONCURRENT} synchronous messages accepted at once", interval_s=0.2)
            assert not returned.is_set(), f"a synchronous call came back early: {outcomes}"
            listing = requests.get(f"{api}/actors", timeout=api_stack.sync_timeout_s + 10)
            assert listing.status_code == 200
            assert not returned.is_set(), \
                "GET /actors answered only once a synchronous call had come back"
        finally:
            requests.delete(f"{api}/actors/{actor_id}", timeout=30)
    # Every call ended: a timeout (408), or 404 once the actor was deleted under it.
    assert len(outcomes) == CONCURRENT
    assert set(outcomes) <= {404, 408}, outcomes


def test_the_api_redis_pool_covers_every_connection_of_a_worker(services: Settings):
    from api.app import create_app

    app = create_app(services)
    pool = app.config["ABACO_PLATFORM"].store.r.connection_pool
    assert pool.max_connections >= services.api_worker_connections
