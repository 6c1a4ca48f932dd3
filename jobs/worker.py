"""The worker: a warm slot of one actor that turns inbox messages into executions.

Loop: block on the inbox (XREADGROUP ... BLOCK), claim the message (a Lua
script, so a purged message never starts), run it through the Runner, store the
logs in S3, write the final record, then acknowledge. The message is
acknowledged only after the record is final, so a worker killed at any point
leaves a pending entry that the scheduler resolves (see ``scheduler.recovery``).

A heartbeat key with a TTL says the worker is alive; a worker idle for
``worker_idle_s`` leaves, and one whose actor is gone leaves at once.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import threading
import time
from typing import Any, cast

from jobs.errors import AbacoError, BackendUnavailable, NotFound
from jobs.keys import INBOX_GROUP
from jobs.lifecycle import idle_limit_s, may_leave_idle, retry_delays
from jobs.logstore import LogStore
from jobs.runners import Runner, RunResult, RunSpec, make_runner
from jobs.secrets import SecretStore
from jobs.settings import Settings, load_settings
from jobs.store import Store
from jobs.timeutil import now_iso, seconds_between
from jobs.tokens import TokenSigner

LOG = logging.getLogger("abaco.worker")
BLOCK_MS = 2000


def format_value(value: Any, style: str) -> str:
    """Abaco hands JSON to actors as a Python literal unless ``json_env_format=json``."""
    if isinstance(value, str):
        return value
    return json.dumps(value) if style == "json" else repr(value)


def container_env(settings: Settings, actor: dict[str, Any], execution: dict[str, Any],
                  worker_id: str, defaults: dict[str, str], state: Any,
                  token: str = "") -> dict[str, str]:
    """The environment contract of API.md, defaults then message parameters then ours."""
    style = settings.json_env_format
    content_type = execution.get("content_type") or "str"
    env = {**defaults, **(execution.get("env") or {})}
    env.update({
        "MSG": format_value("" if execution.get("msg") is None else execution["msg"], style),
        "_abaco_execution_id": execution["id"],
        "_abaco_actor_id": actor["id"],
        "_abaco_actor_dbid": f"{actor['tenant']}_{actor['id']}",
        "_abaco_actor_name": actor.get("name") or "",
        "_abaco_actor_revision": str(actor.get("revision", 1)),
        "_abaco_worker_id": worker_id,
        "_abaco_container_repo": actor["image"],
        "_abaco_username": execution.get("executor") or actor["owner"],
        "_abaco_api_server": settings.api_url,
        "_abaco_jwt_header_name": f"X-Jwt-Assertion-{actor['tenant']}",
        "_abaco_access_token": token,
        "_abaco_actor_state": format_value(state, style),
        "_abaco_Content_Type": content_type,
    })
    return env


class LogSink:
    """Collects a container's output: a capped copy in memory and the live tail in Redis."""

    def __init__(self, store: Store, tenant: str, actor_id: str, eid: str, limit: int) -> None:
        self.store, self.tenant, self.actor_id, self.eid = store, tenant, actor_id, eid
        self.limit = limit
        self.data = bytearray()
        self.total = 0

    def __call__(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.limit + 1 - len(self.data)
        if room <= 0:
            return
        piece = chunk[:room]
        self.data.extend(piece)
        try:
            self.store.append_log(self.tenant, self.actor_id, self.eid, piece)
        except BackendUnavailable:
            LOG.warning("live log of %s not updated: redis unavailable", self.eid)


class Worker:
    """One warm worker of one actor."""

    def __init__(self, settings: Settings, tenant: str, actor_id: str, worker_id: str,
                 store: Store, logs: LogStore, secrets: SecretStore, runner: Runner) -> None:
        self.settings = settings
        self.tenant, self.actor_id, self.worker_id = tenant, actor_id, worker_id
        self.store, self.logs, self.secrets, self.runner = store, logs, secrets, runner
        self.tokens = TokenSigner(settings)
        self.stopping = threading.Event()
        self.inbox = store.keys.inbox(tenant, actor_id)
        self.revision: int | None = None
        self.current: str | None = None
        self.cancelled: set[str] = set()
        self.executions = 0

    # -- lifecycle --------------------------------------------------------------
    def run(self) -> None:
        """Serve the inbox until idle, stopped, replaced by a new revision, or the actor is gone."""
        self._register()
        control = threading.Thread(target=self._control_loop, daemon=True)
        control.start()
        idle_since = time.monotonic()
        try:
            while not self.stopping.is_set():
                revision, registered = self.store.worker_standing(
                    self.tenant, self.actor_id, self.worker_id)
                if revision != self.revision or not registered:
                    break  # updated, deleted, or taken for dead and replaced
                entry = self._next_entry()
                if entry is None:
                    if self._idle_too_long(time.monotonic() - idle_since):
                        break
                    continue
                self.handle(*entry)
                idle_since = time.monotonic()
        except Exception as exc:
            self._set_status("ERROR", str(exc))
            raise
        finally:
            self.stopping.set()
            self._deregister()

    def stop(self) -> None:
        """Finish the current execution (within the drain timeout), then leave."""
        if self.stopping.is_set():
            return
        self.stopping.set()
        self._set_status("SHUTTING_DOWN")
        current = self.current
        if current is not None:
            timer = threading.Timer(self.settings.drain_timeout_s, self._drain, args=(current,))
            timer.daemon = True
            timer.start()

    def _drain(self, eid: str) -> None:
        if self.current == eid:
            LOG.warning("drain timeout: stopping execution %s", eid)
            self.runner.stop_execution(eid)

    def _idle_too_long(self, idle_s: float) -> bool:
        try:
            actor = self.store.get_actor(self.tenant, self.actor_id)
        except NotFound:
            return True
        limit = idle_limit_s(actor.get("hints") or [], self.settings.worker_idle_s,
                             self.settings.sync_worker_idle_s)
        if idle_s < limit and not self.store.r.get(self.store.keys.starving()):
            return False  # idle, but nobody else needs this slot yet
        alive = len(self.store.workers(self.tenant, self.actor_id))
        return may_leave_idle(alive, int(actor.get("min_workers") or 0))

    def _register(self) -> None:
        actor = self.store.get_actor(self.tenant, self.actor_id)
        self.revision = int(actor["revision"])
        worker = {"id": self.worker_id, "status": "READY", "pid": os.getpid(),
                  "image": actor["image"], "revision": self.revision,
                  "host_id": socket.gethostname(), "host_ip": "127.0.0.1",
                  "location": "local", "create_time": now_iso(), "cid": None,
                  "last_execution_time": None, "last_health_check_time": now_iso()}
        self.store.register_worker(self.tenant, self.actor_id, worker,
                                   self.settings.heartbeat_ttl_s)

    def _set_status(self, status: str, message: str = "") -> None:
        try:
            self.store.update_worker(self.tenant, self.actor_id, self.worker_id,
                                     {"status": status, "status_message": message})
        except AbacoError as exc:
            LOG.warning("worker status not updated: %s", exc)

    def _deregister(self) -> None:
        """Leave; if messages arrived meanwhile, make sure the scheduler looks again."""
        try:
            self.store.remove_worker(self.tenant, self.actor_id, self.worker_id)
            if not self.store.pending_count(self.tenant, self.actor_id, self.worker_id):
                self.store.r.xgroup_delconsumer(self.inbox, INBOX_GROUP, self.worker_id)
        except Exception as exc:  # noqa: BLE001 - the inbox may be gone with its actor
            LOG.info("deregistration incomplete: %s", exc)
        try:
            self.store.wake_scheduler(self.tenant, self.actor_id, "worker left")
        except AbacoError as exc:
            LOG.warning("could not wake the scheduler: %s", exc)

    def _control_loop(self) -> None:
        """Heartbeat, and obey ``stop`` / ``cancel:<eid>`` at once (a blocking pop)."""
        interval = self.settings.heartbeat_ttl_s / 3
        while not self.stopping.is_set() or self.current is not None:
            try:
                self.store.heartbeat(self.tenant, self.actor_id, self.worker_id,
                                     self.settings.heartbeat_ttl_s)
                command = self.store.wait_control(self.tenant, self.actor_id, self.worker_id,
                                                  interval)
            except BackendUnavailable:
                LOG.warning("heartbeat failed: redis unavailable")
                self.stopping.wait(interval)
                continue
            if command == "stop":
                self.stop()
            elif command and command.startswith("cancel:"):
                self._cancel(command.partition(":")[2])

    def _cancel(self, eid: str) -> None:
        """Kill the container off this thread, so a slow engine never delays the heartbeat."""
        if eid == self.current:
            self.cancelled.add(eid)
            threading.Thread(target=self.runner.stop_execution, args=(eid,), daemon=True).start()

    def _next_entry(self) -> tuple[str, str] | None:
        try:
            reply = self.store.r.xreadgroup(INBOX_GROUP, self.worker_id, {self.inbox: ">"},
                                            count=1, block=BLOCK_MS)
        except Exception as exc:  # noqa: BLE001 - redis down or the inbox deleted with its actor
            LOG.warning("inbox read failed: %s", exc)
            self.stopping.wait(1.0)
            return None
        for _stream, entries in cast(list, reply or []):
            for entry_id, fields in entries:
                return entry_id.decode(), fields[b"eid"].decode()
        return None

    # -- one message --------------------------------------------------------------
    def handle(self, entry_id: str, eid: str) -> None:
        """Run one message to its final record, then acknowledge it."""
        if self.store.claim(self.tenant, self.actor_id, eid, self.worker_id):
            self.current = eid
            try:
                self._execute(eid)
            except NotFound:
                LOG.info("actor or execution %s vanished while running", eid)
            except Exception as exc:
                LOG.exception("execution %s failed in the platform", eid)
                self._fail(eid, f"platform error: {exc}")
            finally:
                self.current = None
        self._ack(entry_id)

    def _fail(self, eid: str, reason: str) -> None:
        """Record ERROR with a reason; if even that fails, the pending entry lets the
        scheduler resolve it once this worker is gone."""
        try:
            self.store.finish_execution(self.tenant, self.actor_id, eid, {
                "status": "ERROR", "status_message": reason, "finish_time": now_iso()})
        except AbacoError:
            raise SystemExit(f"cannot record the failure of {eid}; leaving it pending") from None

    def _ack(self, entry_id: str) -> None:
        with self.store.r.pipeline() as pipe:
            pipe.xack(self.inbox, INBOX_GROUP, entry_id)
            pipe.xdel(self.inbox, entry_id)
            pipe.execute()

    def _execute(self, eid: str) -> None:
        actor = self.store.get_actor(self.tenant, self.actor_id)
        execution = self.store.get_execution(self.tenant, self.actor_id, eid)
        execution.update(revision=actor["revision"], cold=self.executions == 0)
        if execution.get("cancel_requested"):
            self.cancelled.add(eid)
        self.executions += 1
        self.store.update_worker(self.tenant, self.actor_id, self.worker_id,
                                 {"status": "BUSY"})
        spec = self._spec(actor, execution)
        sink = LogSink(self.store, self.tenant, self.actor_id, eid, self.settings.max_log_bytes)
        result = self._run_with_retries(spec, execution, sink)
        if eid in self.cancelled:
            result.notes.insert(0, "cancelled")
        self._finish(execution, result, bytes(sink.data))
        if result.error and not result.started:
            self.store.update_actor(self.tenant, self.actor_id, {
                "status": "ERROR", "status_message": result.error})
        status = "SHUTTING_DOWN" if self.stopping.is_set() else "READY"
        self.store.update_worker(self.tenant, self.actor_id, self.worker_id,
                                 {"status": status, "last_execution_time": now_iso()})

    def _run_with_retries(self, spec: RunSpec, execution: dict[str, Any],
                          sink: LogSink) -> RunResult:
        """A container that cannot be created or started is retried with backoff."""
        delays = retry_delays(self.settings.start_attempts)
        while True:
            result = self.runner.run(
                spec, lambda started: self._mark_running(execution, started), sink)
            if result.started or not delays or execution["id"] in self.cancelled:
                return result
            LOG.warning("execution %s did not start (%s); retrying", execution["id"],
                        result.error)
            self.stopping.wait(delays.pop(0))

    def _spec(self, actor: dict[str, Any], execution: dict[str, Any]) -> RunSpec:
        defaults = self.secrets.get(self.tenant, self.actor_id) if actor.get("env_names") else {}
        state = self.store.get_state(self.tenant, self.actor_id)
        binary = None
        if execution.get("content_type") == "application/octet-stream":
            binary = self.store.get_binary(self.tenant, self.actor_id, execution["id"]) or b""
        max_run_time = float(actor.get("max_run_time") or self.settings.max_run_time_s)
        token_s = min(max_run_time, self.settings.max_run_time_s)
        token = self.tokens.mint(actor["owner"], self.tenant, actor.get("owner_roles") or [],
                                 token_s, self.actor_id, execution["id"]) \
            if actor.get("token", True) else ""
        return RunSpec(
            execution_id=execution["id"], actor_id=self.actor_id, tenant=self.tenant,
            worker_id=self.worker_id, image=actor["image"],
            env=container_env(self.settings, actor, execution, self.worker_id, defaults, state,
                              token),
            network=self.settings.actor_network,
            max_run_time_s=max_run_time,
            mem_limit=actor.get("mem_limit"),
            nano_cpus=actor.get("max_cpus"), pids_limit=self.settings.pids_limit,
            privileged=bool(actor.get("privileged")), binary=binary)

    def _mark_running(self, execution: dict[str, Any], started: str) -> None:
        if execution["id"] in self.cancelled:  # cancelled between claim and start
            self.runner.stop_execution(execution["id"])
        self.store.update_execution(self.tenant, self.actor_id, execution["id"], {
            "status": "RUNNING", "start_time": started, "worker_id": self.worker_id,
            "revision": execution["revision"], "cold": execution["cold"],
            "queue_time": seconds_between(execution["message_received_time"], started)})

    def _finish(self, execution: dict[str, Any], result: RunResult, logs: bytes) -> None:
        record = {**execution, **_result_fields(execution, result)}
        record.pop("dispatched", None)
        stored = True
        if record.get("start_time"):
            try:
                self.logs.put(self.tenant, self.actor_id, execution["id"], logs,
                              _public_record(record))
            except AbacoError as exc:
                stored = False
                record["status_message"] = (record.get("status_message") or "") + \
                    f" (logs kept in redis: {exc.message})"
        recorded = self.store.finish_execution(self.tenant, self.actor_id, execution["id"],
                                               record)
        if stored or not recorded:
            self.store.drop_live_log(self.tenant, self.actor_id, execution["id"])


def _result_fields(execution: dict[str, Any], result: RunResult) -> dict[str, Any]:
    if result.error:
        return {"status": "ERROR", "status_message": result.error,
                "finish_time": result.finish_time}
    fields: dict[str, Any] = {
        "status": "COMPLETE", "status_message": "; ".join(result.notes),
        "exit_code": result.exit_code, "final_state": result.final_state,
        "runtime": result.runtime, "cpu": result.cpu, "io": result.io,
        "mem_peak": result.mem_peak, "finish_time": result.finish_time,
    }
    if result.start_time:
        fields["start_time"] = result.start_time
        fields["queue_time"] = max(0.0, seconds_between(execution["message_received_time"],
                                                        result.start_time))
    return fields


def _public_record(record: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in record.items() if key not in ("env",)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="abaco worker")
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--actor", required=True)
    parser.add_argument("--worker-id", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(message)s")
    settings = load_settings()
    worker = Worker(settings, args.tenant, args.actor, args.worker_id,
                    Store.from_settings(settings), LogStore(settings), SecretStore(settings),
                    make_runner(settings))
    signal.signal(signal.SIGTERM, lambda *_: worker.stop())
    worker.run()


if __name__ == "__main__":
    main()
