"""Event delivery, off the execution path: links get a message, webhooks a POST.

Two loops in the scheduler process. The first blocks on the events stream (a
consumer group, so an event is delivered by one scheduler; after a restart the
unacknowledged ones are delivered first) and, per event, posts the link's message
and queues the webhook's POST. The second sends queued POSTs when due, several at
once, each leased rather than taken (a sender that dies mid-POST leaves it to be
sent again: at least once), never following redirects (a redirect could lead past
the address checks): a failure (connection error, timeout, non-2xx) is tried
again after ``backoff_first_s`` doubling, up to ``webhook_attempts`` tries. The queue is
bounded (``event_queue_max``); the last outcome per actor is recorded and shown
on the actor as ``lastWebhook``.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests

from jobs.errors import AbacoError, ValidationError
from jobs.events import allow_list, check_webhook
from jobs.service import Platform
from jobs.timeutil import now_iso

LOG = logging.getLogger("abaco.deliver")
GROUP = "deliver"


class EventDelivery:
    """Delivers queued actor events; ``start`` runs both loops in threads."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.settings = platform.settings
        self.store = platform.store
        self.consumer = socket.gethostname()
        self.kick = threading.Event()
        self.allowed = allow_list(self.settings.webhook_allow)
        self.pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="webhook")
        self.backlog_read = False  # this consumer's unacknowledged events go first

    def start(self, stopping: threading.Event) -> None:
        for loop in (self._events_loop, self._webhooks_loop):
            threading.Thread(target=loop, args=(stopping,), daemon=True,
                             name=loop.__name__).start()

    def _events_loop(self, stopping: threading.Event) -> None:
        while not stopping.is_set():
            try:
                self.deliver_events(block_ms=1000)
            except AbacoError as exc:
                LOG.warning("events not read: %s", exc.message)
                stopping.wait(self.settings.backoff_first_s)

    def _webhooks_loop(self, stopping: threading.Event) -> None:
        while not stopping.is_set():
            try:
                following = self.send_due_webhooks(time.time())
            except AbacoError as exc:
                LOG.warning("webhooks not sent: %s", exc.message)
                following = time.time() + self.settings.backoff_first_s
            self.kick.wait(max(0.05, min(5.0, (following or time.time() + 5) - time.time())))
            self.kick.clear()

    # -- one step each (tests drive these) ---------------------------------------------
    def deliver_events(self, block_ms: int = 0) -> int:
        events = self.store.read_events(GROUP, self.consumer, block_ms,
                                        pending=not self.backlog_read)
        if not self.backlog_read and not events:
            self.backlog_read = True
            events = self.store.read_events(GROUP, self.consumer, block_ms)
        for entry_id, document in events:
            self._deliver(document)
            self.store.ack_event(GROUP, entry_id)
        return len(events)

    def _deliver(self, document: dict[str, Any]) -> None:
        tenant, actor_id = document["tenant_id"], document["actor_id"]
        try:
            actor = self.store.get_actor(tenant, actor_id)
        except AbacoError:
            return  # deleted since
        if actor.get("link"):
            try:
                self.platform.send_event(actor, document)
            except AbacoError as exc:
                LOG.info("event %s of %s/%s not sent to link %s: %s", document["event_type"],
                         tenant, actor_id, actor["link"], exc.message)
        if actor.get("webhook"):
            job = {"tenant": tenant, "actor_id": actor_id, "url": actor["webhook"],
                   "event": document, "attempt": 0}
            if self.store.queue_webhook(job, time.time(), self.settings.event_queue_max):
                self.kick.set()
            else:
                self._record(job, "dropped: the webhook queue is full")

    def send_due_webhooks(self, now: float) -> float | None:
        """Post what is due; when the next post is due (None: nothing waits)."""
        lease = self.settings.webhook_timeout_s * 2 + 5  # a dead sender's jobs come back
        due, following = self.store.due_webhooks(now, lease)
        list(self.pool.map(self._post, due))  # a slow endpoint holds one thread, not all
        return following if not due else time.time()

    def _post(self, job: dict[str, Any]) -> None:
        job = {**job, "attempt": job["attempt"] + 1}
        try:
            check_webhook(job["url"], self.allowed)  # a name may resolve elsewhere now
            if not self._still_wanted(job):
                self.store.webhook_done(job)
                return
            reply = requests.post(job["url"], json=job["event"], allow_redirects=False,
                                  timeout=self.settings.webhook_timeout_s)
            outcome, ok = f"HTTP {reply.status_code}", reply.ok
        except ValidationError as exc:
            self.store.webhook_done(job)
            self._record(job, f"refused: {exc.message}")
            return
        except requests.RequestException as exc:
            outcome, ok = f"failed: {type(exc).__name__}", False
        self.store.webhook_done(job)  # the leased copy goes once this attempt is over
        if ok or job["attempt"] >= self.settings.webhook_attempts:
            self._record(job, outcome)
            return
        delay = min(self.settings.backoff_max_s,
                    self.settings.backoff_first_s * 2 ** (job["attempt"] - 1))
        self.store.queue_webhook(job, time.time() + delay, self.settings.event_queue_max + 1)
        self._record(job, f"{outcome}; trying again in {delay:g} s")

    def _still_wanted(self, job: dict[str, Any]) -> bool:
        """A deleted actor, or one whose webhook changed, gets no more POSTs."""
        try:
            actor = self.store.get_actor(job["tenant"], job["actor_id"])
        except AbacoError:
            return False
        return bool(actor.get("webhook") == job["url"])

    def _record(self, job: dict[str, Any], outcome: str) -> None:
        self.store.record_webhook(job["tenant"], job["actor_id"], {
            "url": job["url"], "event_type": job["event"]["event_type"],
            "execution_id": job["event"].get("execution_id"), "outcome": outcome,
            "attempts": job["attempt"], "time": now_iso()})
