"""Image checks: per image and per revision, off the reconcile thread.

A check decides only the revision it was made for (``Inbox.verdict`` refuses a
stale one), so the check of an old image can never mark a newer one READY, nor
the reverse. An engine that cannot be asked is transient: the actor stays
SUBMITTED, says why, and is checked again on a later pass; only an image that
cannot be had sends the actor to ERROR.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from jobs.errors import AbacoError
from jobs.events import ACTOR_ERROR, ACTOR_READY, event_document, wants_events
from jobs.inbox import Outcome
from jobs.lifecycle import retry_delays
from jobs.runners.base import ImageCheck, Runner
from jobs.status import ActorStatus
from jobs.store import Store

LOG = logging.getLogger("abaco.scheduler")
CheckKey = tuple[str, str, int, str]  # tenant, actor, revision, image


class ImageChecks:
    """Runs checks in a small pool and applies their verdicts when done."""

    def __init__(self, store: Store, runner: Runner, attempts: int,
                 stopping: threading.Event, event_queue_max: int = 10000) -> None:
        self.store, self.runner, self.attempts, self.stopping = store, runner, attempts, stopping
        self.event_queue_max = event_queue_max
        self.pending: dict[CheckKey, Future[ImageCheck]] = {}
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="image-check")

    def consider(self, epoch: int, actor: dict[str, Any]) -> None:
        """Start a check for the actor's current revision, or apply a finished one."""
        key: CheckKey = (actor["tenant"], actor["id"], int(actor["revision"]), actor["image"])
        future = self.pending.get(key)
        if future is None:
            future = self.pool.submit(self._check, actor["image"])
            self.pending[key] = future
            future.add_done_callback(lambda _f: self._wake(key))
            return
        if not future.done():
            return
        del self.pending[key]
        self._apply(epoch, key, future.result())

    def _apply(self, epoch: int, key: CheckKey, check: ImageCheck) -> None:
        tenant, actor_id, revision, image = key
        if check.ok:
            fields = {"status": str(ActorStatus.READY), "status_message": ""}
        elif check.transient:
            fields = {"status_message": f"waiting: {check.reason}"}
        else:
            fields = {"status": str(ActorStatus.ERROR), "status_message": check.reason}
        outcome = self.store.inbox.verdict(epoch, tenant, actor_id, revision, fields)
        if outcome is Outcome.OK and "status" in fields:
            self._emit(tenant, actor_id, ACTOR_READY if check.ok else ACTOR_ERROR,
                       fields["status_message"])
        LOG.info("image %s of %s/%s revision %d: %s (%s)", image, tenant, actor_id, revision,
                 "ok" if check.ok else check.reason, outcome)

    def _emit(self, tenant: str, actor_id: str, kind: str, message: str) -> None:
        try:
            actor = self.store.get_actor(tenant, actor_id)
            if wants_events(actor):
                self.store.emit_event(event_document(actor, kind, status_message=message),
                                      self.event_queue_max)
        except AbacoError as exc:
            LOG.warning("event %s of %s/%s not queued: %s", kind, tenant, actor_id, exc)

    def _check(self, image: str) -> ImageCheck:
        """Present or pulled, trying ``attempts`` times with backoff (pool thread)."""
        delays = retry_delays(self.attempts)
        while True:
            check = self.runner.check_image(image)
            if check.ok or not delays or self.stopping.is_set():
                return check
            self.stopping.wait(delays.pop(0))

    def _wake(self, key: CheckKey) -> None:
        try:
            self.store.wake_scheduler(key[0], key[1], "image checked")
        except AbacoError as exc:
            LOG.warning("could not wake the scheduler: %s", exc)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
