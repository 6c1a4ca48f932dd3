"""Events to links and webhooks, through the real scheduler, worker and delivery (fakes
for the engine and processes), with a real HTTP server for webhooks."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from jobs.errors import NotFound, PermissionDenied, ValidationError
from jobs.settings import Settings
from scheduler.deliver import EventDelivery
from tests.harness import CALLER, running_harness
from tests.waits import wait_until


def _events_received(harness: Any, actor_id: str) -> list[dict[str, Any]]:
    records = harness.store.list_executions("T", actor_id)[1]
    return [r for r in records if r["executor"] == "Abaco Event"]


def test_a_link_chain_passes_execution_complete_on(settings: Settings):
    with running_harness(settings) as harness:
        delivery = EventDelivery(harness.platform)
        target = harness.actor()
        source = harness.actor(link=target["id"])
        eid = harness.send(source["id"])
        harness.scheduler.reconcile("T", source["id"])
        wait_until(lambda: harness.execution(source["id"], eid)["status"] == "COMPLETE", 10,
                   "the source's execution")

        def complete_event() -> dict[str, Any] | None:
            delivery.deliver_events()
            for record in _events_received(harness, target["id"]):
                if record["msg"].get("event_type") == "EXECUTION_COMPLETE":
                    return record
            return None

        record = wait_until(complete_event, 10, "EXECUTION_COMPLETE at the link")
        event = record["msg"]
        assert record["content_type"] == "application/json"
        assert event["actor_id"] == source["id"] and event["execution_id"] == eid
        assert event["status"] == "COMPLETE" and event["exit_code"] == 0
        assert event["_abaco_link"] == target["id"] and event["tenant_id"] == "T"
        kinds = {r["msg"]["event_type"] for r in _events_received(harness, target["id"])}
        assert {"ACTOR_READY", "EXECUTION_STARTED", "EXECUTION_COMPLETE"} <= kinds


def test_links_must_exist_be_executable_and_close_no_cycle(settings: Settings):
    from jobs.service import Caller

    with running_harness(settings) as harness:
        platform = harness.platform
        b = harness.actor()
        a = harness.actor(link=b["id"])
        with pytest.raises(ValidationError, match=f"cycle: {b['id']} -> {a['id']} -> {b['id']}"):
            platform.update_actor(CALLER, b["id"], {"image": b["image"], "link": a["id"]})
        with pytest.raises(ValidationError, match=f"cycle: {a['id']} -> {a['id']}"):
            platform.update_actor(CALLER, a["id"], {"image": a["image"], "link": a["id"]})
        with pytest.raises(NotFound, match="^link: nowhere names no actor"):
            platform.create_actor(CALLER, {"image": "img-a", "link": "nowhere"})
        stranger = Caller("mallory", "T", frozenset({"user"}))
        with pytest.raises(PermissionDenied, match="^link"):
            platform.create_actor(stranger, {"image": "img-a", "link": b["id"]})
        assert platform.get_actor(CALLER, b["id"])["link"] == ""


class _Hook(http.server.BaseHTTPRequestHandler):
    """Answers 500 to the first POST, 200 after; keeps what it got."""

    received: list[bytes] = []

    def do_POST(self) -> None:  # noqa: N802 - the http.server name
        self.received.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(500 if len(self.received) == 1 else 200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def hook_server() -> Iterator[str]:
    _Hook.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()


def test_a_webhook_is_retried_after_a_500_and_its_outcome_recorded(settings: Settings,
                                                                     hook_server: str):
    import json
    import time

    with running_harness(settings, webhook_allow="127.0.0.1") as harness:
        delivery = EventDelivery(harness.platform)
        actor = harness.actor(webhook=hook_server)
        eid = harness.send(actor["id"])
        harness.scheduler.reconcile("T", actor["id"])
        wait_until(lambda: harness.execution(actor["id"], eid)["status"] == "COMPLETE", 10,
                   "the execution")

        def completed_twice() -> bool:
            delivery.deliver_events()
            delivery.send_due_webhooks(time.time())
            kinds = [json.loads(body)["event_type"] for body in _Hook.received]
            return kinds.count("EXECUTION_COMPLETE") >= 1 and len(_Hook.received) >= 4

        wait_until(completed_twice, 20, "the webhook posts, the first one retried")
        first = json.loads(_Hook.received[0])
        assert [json.loads(b) for b in _Hook.received].count(first) == 2, \
            "the event answered 500 was posted again"
        last = wait_until(lambda: harness.platform.get_actor(CALLER, actor["id"])[
            "last_webhook"], 10, "the recorded outcome")
        assert last["url"] == hook_server and last["outcome"].startswith("HTTP 200")


def test_webhooks_to_private_networks_are_refused_unless_allowed(settings: Settings):
    with running_harness(settings) as harness:
        for url in ("http://127.0.0.1:9/x", "http://10.0.0.7/x", "http://169.254.169.254/"):
            with pytest.raises(ValidationError, match="^webhook"):
                harness.platform.create_actor(CALLER, {"image": "img-a", "webhook": url})


class _Redirect(http.server.BaseHTTPRequestHandler):
    """Answers every POST with a redirect to /stolen; records the paths it got."""

    paths: list[str] = []

    def do_POST(self) -> None:  # noqa: N802
        self.paths.append(self.path)
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(307)
        self.send_header("Location", "/stolen")
        self.end_headers()

    def do_GET(self) -> None:  # noqa: N802
        self.paths.append(self.path)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return None


def test_webhooks_never_follow_redirects(settings: Settings):
    import time

    _Redirect.paths = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    try:
        with running_harness(settings, webhook_allow="127.0.0.1", webhook_attempts=1) as h:
            delivery = EventDelivery(h.platform)
            actor = h.actor(webhook=url)
            wait_until(lambda: delivery.deliver_events() >= 0 and
                       delivery.send_due_webhooks(time.time()) is None and _Redirect.paths,
                       10, "the webhook POST")
            assert _Redirect.paths == ["/hook"], "the redirect was not followed"
            last = h.platform.get_actor(CALLER, actor["id"])["last_webhook"]
            assert last["outcome"] == "HTTP 307"
    finally:
        server.shutdown()


def test_a_leased_webhook_comes_back_when_its_sender_dies(settings: Settings):
    import time

    with running_harness(settings) as harness:
        store, now = harness.store, time.time()
        job = {"tenant": "T", "actor_id": "a", "url": "http://x.example/", "attempt": 0,
               "event": {"event_type": "ACTOR_READY"}}
        assert store.queue_webhook(job, now, 10)
        taken, _ = store.due_webhooks(now, lease_s=5)
        assert taken == [job]
        assert store.due_webhooks(now + 1, lease_s=5)[0] == [], "leased: not taken twice"
        assert store.due_webhooks(now + 6, lease_s=5)[0] == [job], "the lease lapsed"
        store.webhook_done({**job, "attempt": 1})
        assert store.due_webhooks(now + 60, lease_s=5)[0] == []


def test_repointing_an_alias_may_not_close_a_cycle(settings: Settings):
    with running_harness(settings) as harness:
        platform = harness.platform
        r = harness.actor()
        platform.create_alias(CALLER, {"alias": "hop", "actorId": r["id"]})
        p = harness.actor(link="hop")
        q = harness.actor(link=p["id"])
        with pytest.raises(ValidationError, match="^actorId: would close a cycle"):
            platform.update_alias(CALLER, "hop", {"actorId": q["id"]})
        assert platform.get_alias(CALLER, "hop")["actor_id"] == r["id"]


def test_the_actor_shows_its_last_webhook_and_admins_links_need_a_grant(settings: Settings,
                                                                       hook_server: str):
    import time

    from api.app import create_app
    from jobs.service import Caller

    with running_harness(settings, webhook_allow="127.0.0.1", default_tenant="T") as harness:
        delivery = EventDelivery(harness.platform)
        actor = harness.actor(webhook=hook_server)
        client = create_app(harness.platform.settings, harness.platform).test_client()
        wait_until(lambda: delivery.deliver_events() >= 0 and
                   delivery.send_due_webhooks(time.time()) is None and
                   client.get(f"/actors/{actor['id']}").get_json()["result"].get(
                       "lastWebhook"), 10, "lastWebhook in the reply")
        bob = Caller("bob", "T", frozenset({"user"}))
        bobs = harness.platform.create_actor(bob, {"image": "img-a"})
        root = Caller("root", "T", frozenset({"admin"}))
        with pytest.raises(PermissionDenied, match="^link"):
            harness.platform.create_actor(root, {"image": "img-a", "link": bobs["id"]})
