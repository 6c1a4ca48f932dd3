"""The worker: a warm slot of one revision of one actor, turning messages into runs.

The scheduler registers a worker before placing it; the registration is the
worker's fencing token (``jobs.inbox``): once the scheduler takes it for dead and
removes it, every write it tries is refused and it leaves without touching
anything, its run left for the worker that adopts it.

Loop: block on the inbox, claim (refused for a worker of an older revision),
start the run through the Runner, mark it RUNNING with the run's handle, wait
for it, store the logs in S3, then finish (final record + XACK in one step) and
only then remove what is left of the run on the engine. A claimed execution that
is already RUNNING is an orphan: its worker died, so this one waits on the same
handle and records the true result. Transient failures (Redis, S3, Vault, the
engine) are ridden out with backoff; a message that could not be started goes
back to the queue, and the actor shows why.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from jobs.configs import configs_for
from jobs.errors import AbacoError, BackendUnavailable, NotFound
from jobs.events import EXECUTION_COMPLETE, EXECUTION_STARTED, event_document, wants_events
from jobs.inbox import Outcome
from jobs.lifecycle import Backoff, idle_limit_s, may_leave_idle, prewarms, retry_delays
from jobs.logstore import LogStore
from jobs.models import MAX_SECONDS
from jobs.results import ResultsSocket
from jobs.run_record import (
    LogSink,
    StoredPayload,
    build_spec,
    public_record,
    result_fields,
    run_shape,
)
from jobs.runners import Runner, RunResult, RunSpec, StartFailed, make_runner
from jobs.runners.base import LABEL_PLATFORM
from jobs.secrets import SecretStore
from jobs.settings import Settings, load_settings
from jobs.status import ActorStatus, ExecutionStatus, WorkerStatus
from jobs.store import Store
from jobs.timeutil import now_iso, parse_iso, seconds_between
from jobs.tokens import TokenSigner
from jobs.worker_control import Fenced, WorkerControl

LOG = logging.getLogger("abaco.worker")


class Worker(WorkerControl):
    """One warm worker of one revision of one actor."""

    def __init__(self, settings: Settings, tenant: str, actor_id: str, worker_id: str,
                 store: Store, logs: LogStore, secrets: SecretStore, runner: Runner) -> None:
        self.settings = settings
        self.tenant, self.actor_id, self.worker_id = tenant, actor_id, worker_id
        self.store, self.logs, self.secrets, self.runner = store, logs, secrets, runner
        self.inbox = store.inbox
        self.tokens = TokenSigner(settings)
        self.stopping = threading.Event()
        self.fenced = threading.Event()
        self.actor: dict[str, Any] = {}
        self.revision = 0
        self.current: str | None = None
        self.handle_of: dict[str, str] = {}
        self.cancelled: set[str] = set()
        self.results_socket: str | None = None  # host path, for the run being started
        self.spare: Results | None = None  # the next run's socket, its container prepared
        self.executions = 0
        self.placement: dict[str, Any] = {}  # where it runs, for its placer (Nomad alloc)
        self.backoff = Backoff(settings.backoff_first_s, settings.backoff_max_s)

    # -- lifecycle --------------------------------------------------------------
    def run(self) -> None:
        """Serve until idle, stopped, replaced by a new revision, fenced off, or the actor
        is gone."""
        if not self.activate():
            return
        control = threading.Thread(target=self._control_loop, daemon=True)
        control.start()
        idle_since = time.monotonic()
        try:
            while not self.stopping.is_set() and not self.fenced.is_set():
                if self.adopt_orphans():
                    idle_since = time.monotonic()
                    continue
                self._prepare_next()
                entry = self._next_entry()
                if entry is None:
                    if self._idle_too_long(time.monotonic() - idle_since):
                        break
                    continue
                if not self.handle(*entry):
                    break
                idle_since = time.monotonic()
        except Fenced:
            LOG.warning("worker %s was taken for dead; leaving its run to another", self.worker_id)
        finally:
            self.stopping.set()
            self._leave()

    def activate(self) -> bool:
        """Take up the registration the scheduler made; False when it is gone or stale."""
        try:
            registration = self.store.get_worker(self.tenant, self.actor_id, self.worker_id)
            actor = self.store.get_actor(self.tenant, self.actor_id)
        except NotFound:
            return False
        self.revision = int(registration.get("revision") or actor["revision"])
        if int(actor["revision"]) != self.revision:
            LOG.info("actor %s moved to revision %s before worker %s started", self.actor_id,
                     actor["revision"], self.worker_id)
            self._leave()
            return False
        self.actor = actor  # this worker runs this revision's image, whatever comes later
        return self.inbox.heartbeat(self.tenant, self.actor_id, self.worker_id,
                                    self.settings.heartbeat_ttl_s, {
                                        "status": str(WorkerStatus.READY), "pid": os.getpid(),
                                        "image": actor["image"], "revision": self.revision,
                                        "host_id": socket.gethostname(),
                                        "last_health_check_time": now_iso(),
                                        **self.placement})

    def _idle_too_long(self, idle_s: float) -> bool:
        try:
            actor = self.store.get_actor(self.tenant, self.actor_id)
            if int(actor["revision"]) != self.revision:
                return True  # replaced by workers of the new revision
            limit = idle_limit_s(actor.get("hints") or [], self.settings.worker_idle_s,
                                 self.settings.sync_worker_idle_s)
            if idle_s < limit and not self.store.starving():
                return False  # idle, but nobody else needs this slot yet
            alive = len(self.store.workers(self.tenant, self.actor_id))
        except NotFound:
            return True
        except BackendUnavailable:
            return False
        return may_leave_idle(alive, int(actor.get("min_workers") or 0))

    def _leave(self) -> None:
        """Deregister; if messages arrived meanwhile, make sure the scheduler looks again.
        The prepared container goes first: nothing of a worker outlives it unused."""
        self._quietly(lambda: self.runner.discard_prepared(self.worker_id))
        if self.spare is not None:
            self.spare.close()
            self.spare = None
        try:
            self.inbox.leave(self.tenant, self.actor_id, self.worker_id)
            self.store.wake_scheduler(self.tenant, self.actor_id, "worker left")
        except AbacoError as exc:
            LOG.warning("could not deregister cleanly (the scheduler will): %s", exc)

    def _next_entry(self) -> tuple[str, str] | None:
        try:
            entry = self.inbox.read(self.tenant, self.actor_id, self.worker_id,
                                    int(self.settings.inbox_block_s * 1000))
        except BackendUnavailable as exc:
            LOG.warning("inbox read failed: %s", exc)
            self.stopping.wait(self.backoff.next())
            return None
        self.backoff.reset()
        return entry

    # -- one message --------------------------------------------------------------
    def adopt_orphans(self) -> int:
        """Take over the runs of dead workers, oldest first, before any new message."""
        adopted = 0
        for eid in self._retrying(lambda: self.inbox.orphans(self.tenant, self.actor_id)):
            if self.stopping.is_set():
                break
            outcome = self._retrying(lambda e=eid: self.inbox.adopt(  # type: ignore[misc]
                self.tenant, self.actor_id, self.worker_id, e))
            if outcome is Outcome.FENCED:
                raise Fenced()
            if outcome is Outcome.ADOPT:
                adopted += 1
                self._serve_held("", eid)
        return adopted

    def handle(self, entry: str, eid: str) -> bool:
        """Claim and serve one delivery; False when this worker must leave."""
        for _ in range(100):  # a stateful actor adopts what waits first ('busy')
            outcome = self._retrying(lambda: self.inbox.claim(
                self.tenant, self.actor_id, self.worker_id, self.revision, entry, eid))
            if outcome is not Outcome.BUSY:
                break
            self.adopt_orphans()
        if outcome is Outcome.BUSY:
            return False  # leave; the entry is redelivered once this worker is gone
        if outcome is Outcome.FENCED:
            raise Fenced()
        if outcome is Outcome.STALE:
            return False  # the actor moved on: workers of the new revision serve it
        if outcome is not Outcome.CLAIMED:
            return True
        return self._serve_held(entry, eid)

    def _serve_held(self, entry: str, eid: str) -> bool:
        """Serve an execution this worker now holds (claimed, or adopted)."""
        self.current = eid
        try:
            return self._serve(entry, eid)
        except Fenced:
            self._clean_up_if_deleted(eid)
            raise
        finally:
            self.current = None
            self.handle_of.pop(eid, None)

    def _clean_up_if_deleted(self, eid: str) -> None:
        """Fenced off because the actor was deleted: no worker will adopt the run, so
        nothing of it may stay on the engine."""
        handle = self.handle_of.get(eid)
        try:
            if handle and not self.store.actor_exists(self.tenant, self.actor_id):
                self.runner.stop(handle, remove=True)
        except AbacoError as exc:
            LOG.warning("run %s of a deleted actor not removed: %s", handle, exc)

    def _serve(self, entry: str, eid: str) -> bool:
        execution = self._retrying(lambda: self.store.get_execution(
            self.tenant, self.actor_id, eid))
        self._set_status(WorkerStatus.BUSY)
        adopted = execution["status"] == ExecutionStatus.RUNNING and execution.get("handle")
        results = Results(self) if adopted else self._take_spare()
        results.eid = eid
        try:
            return self._serve_with(entry, execution, results)
        finally:
            results.close()

    def _serve_with(self, entry: str, execution: dict[str, Any], results: Results) -> bool:
        eid = execution["id"]
        if execution["status"] == ExecutionStatus.RUNNING and execution.get("handle"):
            # adopted: its container keeps the socket of the worker that started it
            handle = str(execution["handle"])
            self._retrying(lambda: self.store.drop_live_log(self.tenant, self.actor_id, eid))
        else:
            self.results_socket = results.path
            started = self._start(entry, execution)
            if started is None:
                return not self.fenced.is_set()
            handle = started
        self.handle_of[eid] = handle
        if eid in self.cancelled or execution.get("cancel_requested"):
            self._stop_run(handle)
        sink = LogSink(self.store, self.tenant, self.actor_id, eid, self.settings.max_log_bytes)
        result = self.runner.wait(handle, sink, self._deadline(execution))
        if eid in self.cancelled or self._cancel_requested(eid):
            result.notes.insert(0, "cancelled")
        results.close()  # every datagram sent before the end is stored before the record
        result.notes.extend(results.notes)
        self._record(entry, {**execution, "handle": handle}, result, bytes(sink.data))
        self._set_status(WorkerStatus.SHUTTING_DOWN if self.stopping.is_set()
                         else WorkerStatus.READY)
        return True

    def _start(self, entry: str, execution: dict[str, Any]) -> str | None:
        """Start the run and mark it RUNNING; None when it was given back or ended."""
        eid = execution["id"]
        if execution.get("cancel_requested"):
            self._finish(entry, eid, ExecutionStatus.COMPLETE,
                         {"status_message": "cancelled before it started",
                          "finish_time": now_iso()})
            return None
        try:
            spec = self._spec(execution)
            handle = self._start_with_retries(spec)
        except StartFailed as exc:
            if exc.transient and self._give_back(entry, eid, exc.message,
                                                 refused=exc.engine_answered):
                return None
            reason = exc.message if not exc.transient else (  # refused too often
                f"{exc.message} (refused {self.settings.max_recoveries + 1} times while the "
                "engine answered)")
            self._finish(entry, eid, ExecutionStatus.ERROR,
                         {"status_message": reason, "finish_time": now_iso()})
            if exc.image_missing:
                self._ask_for_image_check(exc.message)
            return None
        except BackendUnavailable as exc:
            self._give_back(entry, eid, exc.message)
            return None
        started = now_iso()
        self.executions += 1
        outcome = self._retrying(lambda: self.inbox.running(
            self.tenant, self.actor_id, self.worker_id, eid, {
                "handle": handle, "start_time": started, "revision": self.revision,
                "cold": self.executions == 1, "worker_id": self.worker_id,
                "queue_time": seconds_between(execution["message_received_time"], started)}))
        if outcome is Outcome.FENCED:
            raise Fenced()  # the run is left for the worker that adopts it
        if outcome is not Outcome.OK:
            LOG.warning("execution %s could not be marked running (%s)", eid, outcome)
            return None
        self._emit(EXECUTION_STARTED, execution_id=eid, worker_id=self.worker_id)
        return handle

    def _emit(self, kind: str, **fields: Any) -> None:
        """An event for the actor's link and webhook, delivered off this path."""
        if wants_events(self.actor):
            self._quietly(lambda: self.store.emit_event(
                event_document(self.actor, kind, **fields), self.settings.event_queue_max))

    def _start_with_retries(self, spec: RunSpec) -> str:
        """A transient start failure is tried ``start_attempts`` times with backoff."""
        delays = retry_delays(self.settings.start_attempts)
        while True:
            try:
                return self.runner.start(spec)
            except StartFailed as exc:
                if not exc.transient or not delays or spec.execution_id in self.cancelled:
                    raise
                LOG.warning("execution %s did not start (%s); retrying", spec.execution_id,
                            exc.message)
                self.stopping.wait(delays.pop(0))

    def _give_back(self, entry: str, eid: str, reason: str, refused: bool = False) -> bool:
        """Back to the queue, the reason shown on the actor, and a pause before the next;
        False when the engine has refused this run too often to give it back again."""
        outcome = self._retrying(lambda: self.inbox.release(
            self.tenant, self.actor_id, self.worker_id, entry, eid, refused,
            self.settings.max_recoveries))
        if outcome is Outcome.FENCED:
            raise Fenced()
        if outcome is Outcome.EXHAUSTED:
            return False
        LOG.warning("execution %s goes back to the queue: %s", eid, reason)
        with contextlib.suppress(AbacoError):
            self.store.update_actor(self.tenant, self.actor_id, {
                "status_message": f"waiting: {reason}"})
        self.stopping.wait(self.backoff.next())
        return True

    def _ask_for_image_check(self, reason: str) -> None:
        """The scheduler, not a worker, decides whether the actor is in ERROR."""
        try:
            self.store.update_actor(self.tenant, self.actor_id, {
                "status": str(ActorStatus.SUBMITTED), "status_message": reason})
            self.store.wake_scheduler(self.tenant, self.actor_id, "image check")
        except AbacoError:
            pass

    def _deadline(self, execution: dict[str, Any]) -> float:
        limit = min(float(self.actor.get("max_run_time") or self.settings.max_run_time_s),
                    MAX_SECONDS)  # a record from before the API bounded it must not crash us
        begun = execution.get("start_time")
        start = parse_iso(begun).timestamp() if begun else time.time()
        return start + limit

    def _cancel_requested(self, eid: str) -> bool:
        try:
            record = self.store.get_execution(self.tenant, self.actor_id, eid)
        except AbacoError:
            return False
        return bool(record.get("cancel_requested"))

    def _record(self, entry: str, execution: dict[str, Any], result: RunResult,
                logs: bytes) -> None:
        """The final record, then the logs to S3, then cleanup.

        The record comes first, so the caller waiting on it is not kept waiting for
        S3. Until the copy is made, the logs are read from their live copy in Redis,
        and marked pending before the record is written: if this worker dies before
        copying them, the scheduler does."""
        eid = execution["id"]
        fields = result_fields(execution, result)
        record = {**execution, **fields}
        if not result.gone:
            self._retrying(lambda: self.store.mark_logs_pending(self.tenant, self.actor_id, eid))
        outcome = self._finish(entry, eid, ExecutionStatus(fields.pop("status")), fields)
        if outcome is not Outcome.OK:  # someone else holds it now: the run and its logs
            self._quietly(lambda: self.store.logs_unmarked(self.tenant, self.actor_id, eid))
            return
        self._emit(EXECUTION_COMPLETE, execution_id=eid, status=record["status"],
                   exit_code=record.get("exit_code"),
                   status_message=record.get("status_message", ""))
        self._prepare_next()  # the reply is out: the next container starts beside the copy
        if not result.gone:
            self._store_logs(record, logs)
        log_ex = self.actor.get("log_ex") or self.settings.log_ex_default
        if log_ex:  # the scheduler deletes them when due
            self._quietly(lambda: self.store.expire_logs_at(
                self.tenant, self.actor_id, eid, time.time() + log_ex))
        # Off the message path: the record is final, so the next message need not wait
        # for the engine to delete the container. Not a daemon thread: a worker that
        # leaves still removes its last run first.
        threading.Thread(target=self._quietly, args=(
            lambda: self.runner.stop(execution["handle"], remove=True),)).start()

    def _store_logs(self, record: dict[str, Any], logs: bytes) -> None:
        """Copy to S3; on failure the logs stay in Redis, marked, for the scheduler."""
        try:
            self.logs.put(self.tenant, self.actor_id, record["id"], logs,
                          public_record(record))
        except AbacoError as exc:
            self.store.inbox.backend_errors.seen(exc.message)
            LOG.warning("logs of %s kept in redis for now: %s", record["id"], exc.message)
            return
        self._quietly(lambda: self.store.logs_copied(self.tenant, self.actor_id, record["id"]))

    def _finish(self, entry: str, eid: str, status: ExecutionStatus,
                fields: dict[str, Any]) -> Outcome:
        fields.pop("status", None)
        outcome = self._retrying(lambda: self.inbox.finish(
            self.tenant, self.actor_id, self.worker_id, entry, eid, status, fields))
        if outcome is Outcome.FENCED:
            raise Fenced()
        return outcome

    def _take_spare(self) -> Results:
        spare, self.spare = self.spare, None
        return spare if spare is not None else Results(self).opened()

    def _prepare_next(self) -> None:
        """The next run's results socket, and its container (when the runner makes
        containers ahead), so that a message finds them ready."""
        if self.spare is not None or self.stopping.is_set() or self.fenced.is_set():
            return
        self.spare = Results(self).opened()
        if not prewarms(self.actor.get("hints") or []):
            return
        try:
            shape = self._labelled(run_shape(
                self.settings, {**self.actor, "revision": self.revision}, self.worker_id))
            self.runner.prepare(dataclasses.replace(shape, results_socket=self.spare.path))
        except AbacoError as exc:
            LOG.info("nothing prepared for the next run of %s: %s", self.actor_id, exc)

    def _spec(self, execution: dict[str, Any]) -> RunSpec:
        defaults = self.secrets.get(self.tenant, self.actor_id) \
            if self.actor.get("env_names") else {}
        state = self.store.get_state(self.tenant, self.actor_id)
        payload = StoredPayload(self.store, self.tenant, self.actor_id, execution["id"]) \
            if execution.get("content_type") == "application/octet-stream" else None
        configs = configs_for(self.store, self.secrets, {**self.actor, "tenant": self.tenant})
        spec = build_spec(self.settings, self.tokens, {**self.actor, "revision": self.revision},
                          execution, self.worker_id, defaults, state, payload, configs)
        return dataclasses.replace(self._labelled(spec), results_socket=self.results_socket)

    def _labelled(self, spec: RunSpec) -> RunSpec:
        """With this platform's label, so the scheduler's sweep finds what a worker that
        died mid-run left, and never another platform's (a shared engine)."""
        return dataclasses.replace(spec, labels={**spec.labels,
                                                 LABEL_PLATFORM: self.store.platform_id()})


class Results:
    """The results socket of the execution a worker serves: datagrams go to Redis in
    order (at most ``max_results`` unread; longer than ``max_result_bytes`` is cut),
    and kept ``results_ttl_s`` after the end. Opened before its execution is known (a
    prewarmed container mounts it); nothing can arrive before the run starts."""

    opened_count = 0

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.eid: str | None = None
        self.path: str | None = None
        self.notes: list[str] = []
        self.socket: ResultsSocket | None = None

    def opened(self) -> Results:
        settings = self.worker.settings
        Results.opened_count += 1
        name = f"{self.worker.worker_id}-{os.getpid()}-{Results.opened_count}.sock"
        try:
            self.socket = ResultsSocket(settings.results_path / name, self._keep,
                                        settings.max_result_bytes)
            self.path = self.socket.open()
        except (OSError, ValueError) as exc:
            LOG.warning("no results socket for worker %s: %s", self.worker.worker_id, exc)
            self.notes.append(f"no results socket: {exc}")
            self.socket = None
        return self

    def _keep(self, data: bytes, cut: bool) -> None:
        w = self.worker
        if self.eid is None:
            return  # no run holds this socket yet
        if not data:
            self._note("empty results were dropped (an empty read means none is left)")
            return
        if cut:
            self._note(f"a result was cut at {w.settings.max_result_bytes} bytes")
        if not w.store.push_result(w.tenant, w.actor_id, self.eid, data,
                                   w.settings.max_results):
            self._note(f"results beyond {w.settings.max_results} unread were dropped")

    def _note(self, text: str) -> None:
        if text not in self.notes:  # once each, however many datagrams
            self.notes.append(text)

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close()
            self.socket = None
            w, eid = self.worker, self.eid
            if eid is not None:
                w._quietly(lambda: w.store.expire_results(w.tenant, w.actor_id, eid,
                                                          w.settings.results_ttl_s))
        self.worker.results_socket = None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="abaco worker")
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--actor", required=True)
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--worker-id", help="serve this registration, then exit")
    who.add_argument("--claim", action="store_true",
                     help="take up registrations offered to this actor's allocations, one "
                          "after another (the Nomad placer's workers)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(message)s")
    settings = load_settings()
    secrets = SecretStore(settings)
    secrets.renew_own_token()
    store, logs, runner = Store.from_settings(settings), LogStore(settings), make_runner(settings)
    store.inbox.backend_errors.process = "worker"
    if not args.claim:
        worker = Worker(settings, args.tenant, args.actor, args.worker_id, store, logs, secrets,
                        runner)
        signal.signal(signal.SIGTERM, lambda *_: worker.stop())
        worker.run()
        return
    serve_claims(settings, args.tenant, args.actor, store,
                 lambda wid: Worker(settings, args.tenant, args.actor, wid, store, logs,
                                    secrets, runner))


def serve_claims(settings: Settings, tenant: str, actor_id: str, store: Store,
                 make: Callable[[str], Worker]) -> None:
    """An allocation's life: take up each offered registration in turn and serve it; on
    SIGTERM the current worker drains and the loop ends."""
    stopping = threading.Event()
    current: list[Worker] = []

    def on_term(*_: object) -> None:
        stopping.set()
        for worker in current:
            worker.stop()

    signal.signal(signal.SIGTERM, on_term)
    placement = {"alloc_id": os.environ.get("NOMAD_ALLOC_ID", ""),
                 "process_start": time.time()}
    while not stopping.is_set():
        try:
            worker_id = store.claim_placement(tenant, actor_id, settings.inbox_block_s)
        except BackendUnavailable as exc:
            LOG.warning("no claim (retrying): %s", exc.message)
            stopping.wait(settings.backoff_first_s)
            continue
        if worker_id is None:
            continue
        if stopping.is_set():  # not ours to serve any more: give it to another allocation
            store.offer_placement(tenant, actor_id, worker_id, settings.worker_startup_grace_s)
            break
        LOG.info("allocation takes up worker %s of %s/%s", worker_id, tenant, actor_id)
        current[:] = [make(worker_id)]
        current[0].placement = placement
        current[0].run()
        current.clear()


if __name__ == "__main__":
    main()
