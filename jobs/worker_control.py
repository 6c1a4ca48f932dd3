"""A worker's control: its heartbeat, its commands (``stop``, ``cancel:<eid>``), draining
on SIGTERM, and riding out a Redis outage, mixed into ``jobs.worker.Worker``.

The heartbeat is the worker's claim to its registration: when a beat is refused the
worker has been taken for dead (fenced), and every later step raises ``Fenced``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from jobs.errors import AbacoError, BackendUnavailable
from jobs.inbox import Inbox
from jobs.lifecycle import Backoff
from jobs.runners import Runner
from jobs.settings import Settings
from jobs.status import WorkerStatus
from jobs.store import Store

LOG = logging.getLogger("abaco.worker")
T = TypeVar("T")


class Fenced(Exception):
    """This worker's registration is gone: it may read, but must not write."""


class WorkerControl:
    """The control half of a worker (see the module docstring)."""

    settings: Settings
    tenant: str
    actor_id: str
    worker_id: str
    store: Store
    inbox: Inbox
    runner: Runner
    stopping: threading.Event
    fenced: threading.Event
    current: str | None
    handle_of: dict[str, str]
    cancelled: set[str]

    def stop(self) -> None:
        """Finish the current execution (within the drain timeout), then leave."""
        if self.stopping.is_set():
            return
        self.stopping.set()
        self._set_status(WorkerStatus.SHUTTING_DOWN)
        current = self.current
        if current is not None:
            timer = threading.Timer(self.settings.drain_timeout_s, self._drain, args=(current,))
            timer.daemon = True
            timer.start()

    def _drain(self, eid: str) -> None:
        handle = self.handle_of.get(eid)
        if self.current == eid and handle:
            LOG.warning("drain timeout: stopping execution %s", eid)
            self._stop_run(handle)

    def _set_status(self, status: WorkerStatus, message: str = "") -> None:
        try:
            self.store.update_worker(self.tenant, self.actor_id, self.worker_id,
                                     {"status": str(status), "status_message": message})
        except AbacoError as exc:
            LOG.warning("worker status not updated: %s", exc)

    def _control_loop(self) -> None:
        """Heartbeat, and obey ``stop`` / ``cancel:<eid>`` at once (a blocking pop)."""
        interval = self.settings.heartbeat_ttl_s / 3
        while not self.fenced.is_set() and (not self.stopping.is_set() or self.current):
            try:
                if not self.inbox.heartbeat(self.tenant, self.actor_id, self.worker_id,
                                            self.settings.heartbeat_ttl_s):
                    self.fenced.set()
                    return
                command = self.store.wait_control(self.tenant, self.actor_id, self.worker_id,
                                                  interval)
            except BackendUnavailable:
                LOG.warning("heartbeat failed: redis unavailable")
                self.fenced.wait(interval)
                continue
            if command == "stop":
                self.stop()
            elif command and command.startswith("cancel:"):
                self._cancel(command.partition(":")[2])

    def _cancel(self, eid: str) -> None:
        """Kill the run off this thread, so a slow engine never delays the heartbeat."""
        self.cancelled.add(eid)
        handle = self.handle_of.get(eid)
        if eid == self.current and handle:
            threading.Thread(target=self._stop_run, args=(handle,), daemon=True).start()

    def _stop_run(self, handle: str) -> None:
        try:
            self.runner.stop(handle)
        except AbacoError as exc:
            LOG.warning("could not stop run %s: %s", handle, exc)

    def _retrying(self, step: Callable[[], T]) -> T:
        """Ride out a Redis outage: retry with backoff until it answers or we are fenced."""
        backoff = Backoff(self.settings.backoff_first_s, self.settings.backoff_max_s)
        deadline = time.monotonic() + self.settings.outage_patience_s
        while True:
            try:
                return step()
            except BackendUnavailable as exc:
                self.store.inbox.backend_errors.seen(exc.message)
                if self.fenced.is_set():
                    raise Fenced() from None
                if time.monotonic() > deadline:
                    raise
                self.fenced.wait(backoff.next())

    def _quietly(self, step: Callable[[], Any]) -> None:
        try:
            step()
        except AbacoError as exc:
            if isinstance(exc, BackendUnavailable):
                self.store.inbox.backend_errors.seen(exc.message)
            LOG.warning("cleanup step failed: %s", exc)
