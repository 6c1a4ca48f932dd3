"""The service layer: what the API does, without HTTP.

Each public method is one user-visible operation. It validates, reads and
writes the stores, and returns plain dicts (snake_case) for the API to wrap.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from jobs.actor_policy import check_actor_fields, check_actor_quota, elevated
from jobs.auth import Authenticator, Caller
from jobs.configs import ConfigOps
from jobs.cron import parse_schedule
from jobs.errors import (
    Conflict,
    Gone,
    NotFound,
    PermissionDenied,
    Timeout,
    Unauthenticated,
    ValidationError,
)
from jobs.ids import check_id, is_id, new_id
from jobs.log_cache import FinalLogs
from jobs.log_follow import LogFollower
from jobs.logstore import LogStore
from jobs.message_env import allowed_patterns, check_message_env
from jobs.models import (
    FINAL_EXECUTION_STATUSES,
    SUMMARY_FIELDS,
    as_bool,
    as_int,
    execution_summary,
    normalize_keys,
    validate_actor_input,
)
from jobs.run_record import format_value
from jobs.secrets import SecretStore
from jobs.settings import Settings
from jobs.sharing import SharingStore
from jobs.sharing_ops import SharingOps
from jobs.status import ACCEPTS_MESSAGES, ActorStatus, ExecutionStatus, WorkerStatus
from jobs.store import Store
from jobs.timeutil import now_iso, parse_iso, to_iso
from jobs.tokens import TokenSigner, redact_tokens

# What one environment variable may hold on Linux (MAX_ARG_STRLEN), less "MSG=" and NUL.
MAX_MSG_BYTES = 128 * 1024 - 5

# Query parameters with a meaning of their own; never passed to the actor.
RESERVED_PARAMS = frozenset({"x-nonce", "_abaco_synchronous"})


@dataclass(frozen=True)
class Message:
    """A message as the API received it."""

    body: Any                  # text, or a JSON value (application/json)
    content_type: str
    env: dict[str, str]
    binary: bytes | None = None


ENV_CACHE_S = 30.0
ENV_CACHE_SIZE = 4096


class Platform(SharingOps, ConfigOps):
    """Operations on actors, messages, executions, workers and state.

    Access control comes from ``jobs.access``, sharing (permissions, nonces, aliases)
    from ``jobs.sharing_ops``."""

    def __init__(self, settings: Settings, store: Store, logs: LogStore,
                 secrets: SecretStore) -> None:
        self.settings = settings
        self.store = store
        self.logs = logs
        self.secrets = secrets
        self.sharing = SharingStore(store)
        self.tokens = TokenSigner(settings)
        self.auth = Authenticator(settings, self.tokens)
        self.message_env_allow = allowed_patterns(settings.message_env_allow)
        # (tenant, actor, last update) -> (expiry, values): see _env_values
        self._env_cache: dict[tuple[str, str, Any], tuple[float, dict[str, str]]] = {}
        self.final_logs = FinalLogs(settings.log_cache_bytes)

    @classmethod
    def from_settings(cls, settings: Settings) -> Platform:
        return cls(settings, Store.from_settings(settings), LogStore(settings),
                   SecretStore(settings))

    def authenticate(self, headers: Mapping[str, str]) -> Caller:
        """The caller of a request; an execution token only while its execution runs."""
        caller = self.auth.caller(headers)
        grant = caller.execution
        if grant is not None:
            try:
                record = self.store.get_execution(caller.tenant, grant.actor_id,
                                                  grant.execution_id)
            except NotFound:
                raise Unauthenticated("execution token revoked: its execution is gone") \
                    from None
            if record["status"] in FINAL_EXECUTION_STATUSES:
                raise Unauthenticated(f"execution token revoked: execution "
                                      f"{grant.execution_id} has ended")
        return caller

    # -- actors ---------------------------------------------------------------
    def create_actor(self, caller: Caller, body: dict[str, Any]) -> dict[str, Any]:
        if caller.narrowed:
            raise PermissionDenied("nonces and execution tokens cannot register actors")
        fields = validate_actor_input(body)
        if fields.get("cron_schedule") and "cron_on" not in normalize_keys(body):
            fields["cron_on"] = True  # a schedule given is a schedule meant to run
        check_actor_fields(self.settings, caller, fields)
        self._check_targets(caller, fields, None)
        check_actor_quota(self.settings, caller, sum(
            1 for a in self.store.list_actors(caller.tenant) if a["owner"] == caller.user))
        env = fields.pop("default_environment")
        now = now_iso()
        actor = {
            **fields, "id": new_id(), "tenant": caller.tenant, "owner": caller.user,
            "status": str(ActorStatus.SUBMITTED), "status_message": "", "revision": 1,
            "env_names": sorted(env), "create_time": now, "last_update_time": now,
            # a worker once it is READY, if the host has one to spare (limited users hold none)
            "warm_start": 0 if caller.is_limited else 1,
            **cron_fields(fields, None, datetime.now(UTC)),
        }
        if env:
            self.secrets.put(caller.tenant, actor["id"], env)
        self.store.create_actor(actor)
        self.store.wake_scheduler(caller.tenant, actor["id"], "actor created")
        return {**actor, "default_environment": env}

    def get_actor(self, caller: Caller, actor_id: str) -> dict[str, Any]:
        actor = self._actor(caller, actor_id, "READ")
        webhook = self.store.last_webhook(caller.tenant, actor["id"]) \
            if actor.get("webhook") else None
        return {**actor, "default_environment": self._env_values(actor),
                "last_webhook": webhook}

    def list_actors(self, caller: Caller) -> list[dict[str, Any]]:
        """The actors the caller can READ."""
        if caller.execution is not None:
            raise PermissionDenied("an execution token may not list actors")
        return [{**a, "default_environment": self._env_values(a)}
                for a in self.store.list_actors(caller.tenant)
                if self._allowed(caller, a["owner"], f"actor:{a['id']}", "READ")]

    def update_actor(self, caller: Caller, actor_id: str, body: dict[str, Any]) -> dict[str, Any]:
        actor = self._actor(caller, actor_id, "UPDATE", "manage")
        actor_id = actor["id"]
        if elevated(actor) and not caller.is_privileged and (
                caller.user != actor["owner"] or caller.narrowed):
            raise PermissionDenied("privileged: only its owner or a privileged user may "
                                   "update an actor that is privileged, mounts host paths "
                                   "or runs as its image's user")
        existing = {**actor, "default_environment": self._env_values(actor)}
        fields = validate_actor_input(body, existing)
        check_actor_fields(self.settings, caller, fields, actor)
        if (fields.get("link"), fields.get("webhook")) != (actor.get("link"),
                                                           actor.get("webhook")):
            self._check_targets(caller, fields, actor_id)
        env = fields.pop("default_environment")
        force = as_bool("force", body.get("force", False))
        if fields.get("cron_schedule") and not actor.get("cron_schedule") and \
                "cron_on" not in normalize_keys(body):
            fields["cron_on"] = True
        changes: dict[str, Any] = {**fields, "env_names": sorted(env),
                                   "last_update_time": now_iso(),
                                   "warm_start": 0 if caller.is_limited else 1,
                                   **cron_fields(fields, actor, datetime.now(UTC))}
        if force or fields["image"] != actor["image"]:
            changes.update(revision=int(actor["revision"]) + 1, status=str(ActorStatus.SUBMITTED),
                           status_message="")
        if env != existing["default_environment"]:
            self.secrets.put(caller.tenant, actor_id, env)
        self.store.update_actor(caller.tenant, actor_id, changes)
        self.store.wake_scheduler(caller.tenant, actor_id, "actor updated")
        return {**actor, **changes, "default_environment": env}

    def delete_actor(self, caller: Caller, actor_id: str) -> None:
        """Stop workers (killing running containers), then delete every record."""
        actor = self._actor(caller, actor_id, "UPDATE", "manage")
        actor_id = actor["id"]
        self.store.mark_deleting(caller.tenant, actor_id)  # from here, messages are refused
        for worker in self.store.workers(caller.tenant, actor_id):
            self.store.send_control(caller.tenant, actor_id, worker["id"], "stop",
                                    self.settings.heartbeat_ttl_s)
        for eid in self.store.inbox.holders(caller.tenant, actor_id):  # claimed or adopted
            self._cancel_running(caller.tenant, actor_id, eid)
        if actor.get("env_names"):
            self.secrets.delete(caller.tenant, actor_id)
        self.sharing.drop_target(caller.tenant, f"actor:{actor_id}")
        for alias in self.sharing.list_aliases(caller.tenant):
            if alias["actor_id"] == actor_id:  # an alias of nothing could be re-pointed
                self.sharing.delete_alias(caller.tenant, alias["alias"])
        self.store.delete_actor(caller.tenant, actor_id)
        self.store.wake_scheduler(caller.tenant, actor_id, "actor deleted")

    # -- messages ---------------------------------------------------------------
    def send_message(self, caller: Caller, actor_id: str, message: Message) -> dict[str, Any]:
        posted = self._post_directly(caller, actor_id, message)
        if posted is not None:
            return posted
        actor = self._actor(caller, actor_id, "EXECUTE", "message")
        actor_id = actor["id"]
        if actor["status"] == ActorStatus.ERROR:
            raise Conflict(f"actor {actor_id} is in ERROR state: {actor.get('status_message')}")
        if actor["status"] not in ACCEPTS_MESSAGES:
            raise Conflict(f"actor {actor_id} is {actor['status']}; it takes no messages")
        env = check_message_env(message.env, actor.get("env_names") or [],
                                self.message_env_allow)
        if message.binary is None:
            self._fits_in_msg(message.body)
        execution = new_execution(actor, caller.user, Message(
            message.body, message.content_type, env, message.binary),
            caller.execution.execution_id if caller.execution else None)
        self.store.post_message(execution, message.binary)
        return {"execution_id": execution["id"], "msg": message.body}

    def _post_directly(self, caller: Caller, actor_id: str,
                       message: Message) -> dict[str, Any] | None:
        """A message from the actor's owner or an admin, posted in one round trip: the
        post script itself checks that the sender owns the actor (or is an admin), that
        it takes messages, and takes its revision. None, and nothing posted, for what
        needs the full path (an alias, a share, a nonce, message parameters, a refusal),
        which then answers as it always does."""
        if caller.nonce is not None or message.env or message.binary is not None or \
                not is_id(actor_id) or not self._fits(message.body):
            return None
        execution = new_execution({"id": actor_id, "tenant": caller.tenant, "revision": None},
                                  caller.user, message,
                                  caller.execution.execution_id if caller.execution else None)
        sender = "*" if caller.is_admin else json.dumps(caller.user)
        if not self.store.post_message(execution, None, sender=sender):
            return None
        return {"execution_id": execution["id"], "msg": message.body}

    def _fits(self, body: Any) -> bool:
        try:
            self._fits_in_msg(body)
        except ValidationError:
            return False
        return True

    def _fits_in_msg(self, body: Any) -> None:
        """A message reaches the container as ``$MSG``; Linux takes at most 128 KiB for
        one variable, so a larger one could never start."""
        size = len(format_value(body, self.settings.json_env_format).encode("utf-8", "replace"))
        if size > MAX_MSG_BYTES:
            raise ValidationError("message", f"is {size} bytes; at most {MAX_MSG_BYTES} fit in "
                                             "$MSG: send larger data as "
                                             "application/octet-stream")

    def queued_count(self, caller: Caller, actor_id: str) -> int:
        actor_id = self._actor(caller, actor_id, "READ")["id"]
        return self.store.queued_count(caller.tenant, actor_id)

    def purge_messages(self, caller: Caller, actor_id: str) -> int:
        actor_id = self._actor(caller, actor_id, "UPDATE", "manage")["id"]
        dropped = 0
        for eid in self.store.queued_ids(caller.tenant, actor_id):
            dropped += self.store.drop_queued(caller.tenant, actor_id, eid,
                                              "message purged from the inbox before it ran")
        return dropped

    def synchronous_reply(self, caller: Caller, actor_id: str, eid: str) -> tuple[bytes, str]:
        """What a synchronous message answers once its execution is final: its first
        result when there is one, else its logs (Abaco's rule), with their media type.
        The caller sent the message, so it may read both; one round trip reads both."""
        actor_id = self.wait_for_execution(caller, actor_id, eid)
        first, live = self.store.first_result_and_live_log(caller.tenant, actor_id, eid)
        if first is not None:
            return first, "application/octet-stream"
        if live is not None:
            return redact_tokens(live), "text/plain"
        return self.get_logs(caller, actor_id, eid).encode(), "text/plain"

    def wait_for_execution(self, caller: Caller, actor_id: str, eid: str) -> str:
        """Block until the execution is final, reading the actor's event stream; the
        actor's id (``actor_id`` may be an alias)."""
        actor_id = self._actor(caller, actor_id, "EXECUTE", "message")["id"]
        deadline_s = self.settings.sync_timeout_s
        after = self.store.last_event_id(caller.tenant, actor_id)
        status = self.store.get_execution(caller.tenant, actor_id, eid)["status"]
        deadline = time.monotonic() + deadline_s
        while status not in FINAL_EXECUTION_STATUSES:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Timeout(f"execution {eid} did not finish within {deadline_s:g} s",
                              execution_id=eid)
            for event_id, event in self.store.wait_events(caller.tenant, actor_id, after,
                                                          remaining):
                after = event_id
                if event.get("execution_id") == eid and event.get("status"):
                    status = event["status"]  # the completion names the final status
                elif event.get("event") == "ACTOR_DELETED":  # the record went with it
                    status = self.store.get_execution(caller.tenant, actor_id, eid)["status"]
        return actor_id

    # -- executions -------------------------------------------------------------
    def list_executions(self, caller: Caller, actor_id: str, offset: int = 0,
                        limit: int | None = None) -> dict[str, Any]:
        check_id(actor_id, "actor_id")
        known, total, page, sums = self.store.actor_and_executions_page(
            caller.tenant, actor_id, offset, limit, SUMMARY_FIELDS)  # read before the check,
        actor = self._actor(caller, actor_id, "READ", "executions", known)  # shown after
        actor_id = actor["id"]
        if known is None:  # named by an alias: the page of the actor it names
            total, page, sums = self.store.executions_page(caller.tenant, actor_id, offset,
                                                           limit, SUMMARY_FIELDS)
        return {"actor_id": actor_id, "owner": actor["owner"], "total_executions": total,
                "total_cpu": int(sums.get("cpu", 0)), "total_io": int(sums.get("io", 0)),
                "total_runtime": sums.get("runtime", 0.0),
                "executions": [execution_summary(r) for r in page]}

    def get_execution(self, caller: Caller, actor_id: str, eid: str) -> dict[str, Any]:
        actor = self._actor(caller, actor_id, "READ", "execution")
        record = self._execution(caller, actor["id"], eid)
        return {**record, "actor_owner": actor["owner"]}

    def _execution(self, caller: Caller, actor_id: str, eid: str) -> dict[str, Any]:
        check_id(eid, "execution_id")
        record = self.store.get_execution(caller.tenant, actor_id, eid)
        self._sent_by_caller(caller, record)
        return record

    def get_logs(self, caller: Caller, actor_id: str, eid: str) -> str:
        """Live tail from Redis while running; the durable S3 copy afterwards."""
        actor_id, record = self._readable_logs(caller, actor_id, eid)
        kept = (caller.tenant, actor_id, eid, str(record.get("finish_time")))
        text = self.final_logs.get(kept)  # only ever kept once read from S3
        if text is not None:
            return text
        live = self.store.live_log(caller.tenant, actor_id, eid)
        if live is not None:
            return redact_tokens(live).decode("utf-8", "replace")
        if record["status"] not in FINAL_EXECUTION_STATUSES or not record.get("start_time"):
            return ""
        try:
            text = self.logs.get_logs(caller.tenant, actor_id, eid).decode("utf-8", "replace")
        except NotFound:
            return ""
        self.final_logs.put(kept, text)
        return text

    def follow_logs(self, caller: Caller, actor_id: str, eid: str) -> LogFollower:
        """The log as it grows, until the execution ends. Every check is made here,
        before the first byte, so a refusal is still an ordinary error reply."""
        actor_id, _ = self._readable_logs(caller, actor_id, eid)
        return LogFollower(self.store, self.logs, caller.tenant, actor_id, eid,
                           self.settings.max_log_bytes)

    def _readable_logs(self, caller: Caller, actor_id: str,
                       eid: str) -> tuple[str, dict[str, Any]]:
        actor_id = self._actor(caller, actor_id, "READ", "execution")["id"]
        record = self._execution(caller, actor_id, eid)
        if record.get("logs_expired"):
            raise Gone(f"the logs of execution {eid} expired at {record['logs_expired']} "
                       "(the actor's logEx)")
        return actor_id, record

    def next_result(self, caller: Caller, actor_id: str, eid: str) -> bytes | None:
        """Take the next unread result (reading consumes it, as in Abaco)."""
        actor_id = self._actor(caller, actor_id, "READ", "execution")["id"]
        record = self._execution(caller, actor_id, eid)
        grant = caller.execution
        if grant is not None and eid != grant.execution_id and \
                record.get("origin_execution") != grant.execution_id:
            raise PermissionDenied("an execution token reads the results of its own execution "
                                   "and of those it sent, no others")
        return self.store.pop_result(caller.tenant, actor_id, eid)

    def add_result(self, caller: Caller, actor_id: str, eid: str, data: bytes) -> None:
        """Only the execution itself, with its own token, adds results."""
        grant = caller.execution
        actor_id = self._actor(caller, actor_id, "READ", "execution")["id"]
        if grant is None or grant.execution_id != eid or grant.actor_id != actor_id:
            raise PermissionDenied("only the execution itself adds results, with its own "
                                   "token (_abaco_access_token)")
        if not data:
            raise ValidationError("body", "an empty result cannot be told from none left")
        if len(data) > self.settings.max_result_bytes:
            raise ValidationError("body", f"a result is at most "
                                          f"{self.settings.max_result_bytes} bytes")
        if not self.store.push_result(caller.tenant, actor_id, eid, data,
                                      self.settings.max_results):
            raise Conflict(f"{self.settings.max_results} results already wait unread")

    def cancel_execution(self, caller: Caller, actor_id: str, eid: str) -> dict[str, Any]:
        """A queued message is dropped; a running container is killed by its worker at once."""
        actor = self._actor(caller, actor_id, "UPDATE", "manage")
        actor_id = actor["id"]
        check_id(eid, "execution_id")
        record = self.store.get_execution(caller.tenant, actor_id, eid)
        if record["status"] in FINAL_EXECUTION_STATUSES:
            raise Conflict(f"execution {eid} has already finished ({record['status']})")
        reason = f"cancelled by {caller.user}"
        if not self.store.drop_queued(caller.tenant, actor_id, eid, reason,
                                      status=ExecutionStatus.COMPLETE):
            self._cancel_running(caller.tenant, actor_id, eid)  # claimed meanwhile
        record = self.store.get_execution(caller.tenant, actor_id, eid)
        return {**record, "actor_owner": actor["owner"]}

    def _cancel_running(self, tenant: str, actor_id: str, eid: str) -> None:
        """The flag covers a worker between claim and start; the control message the rest."""
        worker_id = self.store.inbox.request_cancel(tenant, actor_id, eid)
        if worker_id:
            self.store.send_control(tenant, actor_id, worker_id, f"cancel:{eid}",
                                    self.settings.heartbeat_ttl_s)

    # -- workers ------------------------------------------------------------------
    def list_workers(self, caller: Caller, actor_id: str) -> list[dict[str, Any]]:
        actor_id = self._actor(caller, actor_id, "READ", "workers")["id"]
        return self.store.workers(caller.tenant, actor_id)

    def get_worker(self, caller: Caller, actor_id: str, worker_id: str) -> dict[str, Any]:
        actor_id = self._actor(caller, actor_id, "READ", "workers")["id"]
        check_id(worker_id, "worker_id")
        return self.store.get_worker(caller.tenant, actor_id, worker_id)

    def request_workers(self, caller: Caller, actor_id: str, num: Any) -> dict[str, Any]:
        """Admins ask for ``num`` workers now; the scheduler starts what is missing."""
        if not caller.is_admin or caller.narrowed:
            raise PermissionDenied("only admins may add workers")
        actor_id = self._actor(caller, actor_id, "UPDATE", "manage")["id"]
        count = as_int("num", num, minimum=1, maximum=1000)
        self.store.update_actor(caller.tenant, actor_id, {"workers_requested": count})
        self.store.wake_scheduler(caller.tenant, actor_id, "workers requested")
        return {"num": count}

    def stop_worker(self, caller: Caller, actor_id: str, worker_id: str) -> None:
        """Graceful: the worker finishes its current execution, then leaves."""
        actor_id = self._actor(caller, actor_id, "UPDATE", "manage")["id"]
        self.get_worker(caller, actor_id, worker_id)
        self.store.update_worker(caller.tenant, actor_id, worker_id,
                                 {"status": str(WorkerStatus.SHUTTING_DOWN)})
        self.store.send_control(caller.tenant, actor_id, worker_id, "stop",
                                self.settings.heartbeat_ttl_s)

    # -- state --------------------------------------------------------------------
    def get_state(self, caller: Caller, actor_id: str) -> dict[str, Any]:
        actor = self._actor(caller, actor_id, "READ", "state")
        actor_id = actor["id"]
        return {"actor_id": actor_id, "state": self.store.get_state(caller.tenant, actor["id"])}

    def set_state(self, caller: Caller, actor_id: str, value: Any) -> dict[str, Any]:
        actor = self._actor(caller, actor_id, "UPDATE", "state")
        actor_id = actor["id"]
        if actor.get("stateless", True):
            raise NotFound("actor is stateless")
        self.store.set_state(caller.tenant, actor_id, value)
        return {"actor_id": actor_id, "state": value}

    def _env_values(self, actor: dict[str, Any]) -> dict[str, str]:
        """The actor's defaultEnvironment values, from Vault through a short cache: a read
        path must not cost a Vault request each time. The key holds the actor's
        ``last_update_time``, which every update changes after writing Vault, so no
        process serves a value older than the actor's last update."""
        if not actor.get("env_names"):
            return {}
        key = (actor["tenant"], actor["id"], actor.get("last_update_time"))
        cached = self._env_cache.get(key)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            return dict(cached[1])
        values = self.secrets.get(actor["tenant"], actor["id"])
        if len(self._env_cache) >= ENV_CACHE_SIZE:
            self._env_cache.clear()
        self._env_cache[key] = (now + ENV_CACHE_S, dict(values))
        return values


def new_execution(actor: dict[str, Any], executor: str, message: Message,
                  origin: str | None = None) -> dict[str, Any]:
    """The record of a message to ``actor``, as posted: by a user, an execution
    (``origin``), the cron schedule or an event link."""
    return {
        "id": new_id(), "actor_id": actor["id"], "tenant": actor["tenant"],
        "executor": executor, "worker_id": None, "status": str(ExecutionStatus.SUBMITTED),
        "status_message": "", "message_received_time": now_iso(), "start_time": None,
        "finish_time": None, "runtime": None, "cpu": None, "io": None, "mem_peak": None,
        "queue_time": None, "exit_code": None, "final_state": None,
        "msg": message.body, "content_type": message.content_type, "env": message.env,
        "revision": actor["revision"], "origin_execution": origin,
    }


def cron_fields(fields: dict[str, Any], before: dict[str, Any] | None,
                now: datetime) -> dict[str, Any]:
    """``cronNextEx`` (and the moment the schedule was set, which anchors ``now + ...``)
    for an actor's new fields."""
    text = fields.get("cron_schedule")
    if not text:
        return {"cron_on": False, "cron_next_ex": None, "cron_set_time": None}
    kept = before is not None and before.get("cron_schedule") == text
    set_time = before["cron_set_time"] if kept and before and before.get("cron_set_time") \
        else to_iso(now)
    schedule = parse_schedule(text, parse_iso(set_time))
    on = bool(fields.get("cron_on"))
    return {"cron_on": on, "cron_set_time": set_time,
            "cron_next_ex": to_iso(schedule.next_after(now)) if on else None}
