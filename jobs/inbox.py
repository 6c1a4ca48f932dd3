"""The inbox protocol: how a message becomes exactly one run, in one place.

Every step is one Lua script over keys of one actor (one hash tag, see
``jobs.keys``), so each is atomic and valid on Redis Cluster. Nothing outside
this module touches an actor's inbox stream, its ``queued`` set, the
execution state machine (``jobs.status``) or worker registrations.

Keys of one actor (``{p}:{t}:actor:{tag}`` + suffix)::

    ""            hash    the actor; ``fence`` = highest scheduler epoch seen
    :inbox        stream  one entry per delivery, field ``eid``; group ``workers``
    :queued       zset    new executions waiting for a worker
    :orphans      zset    runs of dead workers waiting for adoption (before new ones)
    :executions   zset    every execution, by time received
    :exec:{eid}   hash    the execution (JSON values)
    :workers      hash    worker id -> JSON registration
    :worker:{w}:hb string  heartbeat, with a TTL

Fencing. A worker's registration is its fencing token: ``claim``, ``running``,
``finish``, ``release``, ``heartbeat`` and ``activate`` succeed only while the
worker is still registered for the actor. The scheduler registers workers and
removes dead ones; it holds a lock whose every new holder gets the next
*epoch*, and an actor remembers the highest epoch that wrote to it (``fence``):
a scheduler with an older epoch (one that was paused past its lock's TTL) can
read, but no longer write. A worker or scheduler taken for dead can read, but can
no longer change anything.

Steps (who, what):

- ``post`` (api): only while the actor exists and accepts messages; the record,
  the queued entry and the stream entry in one step.
- ``claim`` (worker): refused for an unregistered worker, and for a worker of an
  older revision (the entry goes back for a worker of the current one); a stateful
  actor claims nothing new while an orphan waits (its runs never overlap).
- ``adopt`` (worker): take an orphan, the run of a dead worker; workers adopt
  orphans before they read new messages.
- ``running`` (worker): SUBMITTED -> RUNNING with the runner's handle.
- ``finish`` (worker): the final record, the completion event and the XACK.
- ``release`` (worker): an unstarted message goes back to the queue.
- ``drop`` (api: cancel, purge): a message still waiting ends, never a claimed one.
- ``recover`` (scheduler): an entry of a dead worker is acknowledged, delivered
  again, or its execution orphaned (``:orphans``) for adoption, only if that
  execution is still held by the dead worker; each is one step with the XACK.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, cast

import orjson
import redis

from jobs import inbox_lua as lua
from jobs import metrics, round_trip
from jobs.errors import BackendUnavailable
from jobs.keys import INBOX_GROUP, Keys
from jobs.round_trip import Command
from jobs.status import ExecutionStatus
from jobs.timeutil import now_iso

LOG = logging.getLogger("abaco.inbox")
EVENTS_MAXLEN = 1000
NULL = "null"

class Outcome(StrEnum):
    """What a protocol step did; every caller decides from this, never from a guess."""

    OK = "ok"
    CLAIMED = "claimed"
    ADOPT = "adopt"
    STALE = "stale"            # a newer revision (or an older epoch) decides instead
    GONE = "gone"              # the actor or message no longer exists / waits
    FENCED = "fenced"          # the writer is no longer registered (or holds no lock)
    LOST = "lost"              # the execution is held by someone else now
    ILLEGAL = "illegal"        # the state machine has no such move
    ALIVE = "alive"
    ACKED = "acked"
    REDELIVERED = "redelivered"
    ORPHANED = "orphaned"
    GIVEN_UP = "given-up"
    BUSY = "busy"              # a stateful actor has a run to adopt first
    EXHAUSTED = "exhausted"    # the engine refused this run too often
    FULL = "full"
    NOT_READY = "not-ready"
    DELETING = "deleting"


@dataclass(frozen=True)
class Rejected:
    """``post`` refused: the actor is gone (None) or in this status."""

    status: str | None


CHECK = "check"  # a post the script left to the caller: the sender's right is not plain


def _pairs(fields: Mapping[str, Any]) -> list[str]:
    flat: list[str] = []
    for key, value in fields.items():
        flat += [key, _json(value)]
    return flat


def _json(value: Any) -> str:
    """orjson where it can (several times faster), the standard library otherwise
    (integers past 64 bits); either reads back the same."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value)


def redis_failure(exc: Exception) -> BackendUnavailable:
    """Redis out of reach, or refusing a command (NOGROUP once an actor's inbox went
    with it, WRONGTYPE): said as which, since only the first is an outage."""
    if isinstance(exc, redis.ResponseError):
        return BackendUnavailable(f"redis refused the command: {exc}")
    return BackendUnavailable(f"redis is unavailable: {exc}")


def _given_up(most: int) -> dict[str, Any]:
    return {"status_message": f"given up: its worker was lost {most + 1} times before the "
                              "run could start", "finish_time": now_iso()}


def _outcome(raw: Any) -> Outcome:
    return Outcome(raw.decode() if isinstance(raw, bytes) else str(raw))


class Inbox:
    """The protocol's steps, bound to one Redis client and key builder."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.r = client
        self.keys = keys
        self.backend_errors = metrics.BackendErrors(client, keys.metrics())
        self._scripts = {name: client.register_script(lua.PRELUDE + body) for name, body in {
            "post": lua.POST, "claim": lua.CLAIM, "adopt": lua.ADOPT, "running": lua.RUNNING,
            "finish": lua.FINISH,
            "release": lua.RELEASE, "drop": lua.DROP, "recover": lua.RECOVER,
            "register": lua.REGISTER, "remove": lua.REMOVE, "beat": lua.BEAT,
            "update_actor": lua.UPDATE_ACTOR, "verdict": lua.ACTOR_VERDICT,
            "cancel": lua.CANCEL}.items()}
        self._acquire = client.register_script(lua.ACQUIRE)
        self._release_lock = client.register_script(lua.RELEASE_LOCK)

    def _run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        try:
            return round_trip.script(self.r, self._scripts[name], keys, args)
        except redis.RedisError as exc:
            raise redis_failure(exc) from exc

    def _run_with(self, name: str, keys: list[str], args: list[Any],
                  also: Sequence[Command]) -> Any:
        """The script and the ``also`` commands in one round trip (``jobs.round_trip``);
        a Redis that lost its scripts (restarted) gets the script loaded by the plain
        path, and ``also`` sent again after it."""
        script = self._scripts[name]
        try:
            raw = round_trip.send(self.r, [("EVALSHA", script.sha, len(keys), *keys, *args),
                                           *also])[0]
        except redis.RedisError as exc:
            raise redis_failure(exc) from exc
        if isinstance(raw, redis.exceptions.NoScriptError):
            result = self._run(name, keys, args)
            with contextlib.suppress(redis.RedisError):  # the sweep finds the message
                round_trip.send(self.r, also)
            return result
        if isinstance(raw, Exception):
            raise redis_failure(raw)
        return raw

    # -- api ------------------------------------------------------------------------
    def post(self, execution: Mapping[str, Any], binary: bytes | None = None,
             also: Sequence[Command] = (), sender: str = "") -> Rejected | None:
        """Record an execution and queue it, only while its actor accepts messages.
        ``also``: commands sent in the same round trip (the scheduler's wake-up); they
        run whatever the post's outcome. ``sender``: '' when the caller
        checked the sender's right; '*' for an admin; else the sender, who must own the
        actor (``Rejected(CHECK)`` otherwise, nothing written)."""
        t, a, eid = execution["tenant"], execution["actor_id"], execution["id"]
        k = self.keys
        keys = [k.actor(t, a), k.execution(t, a, eid), k.execution_binary(t, a, eid),
                k.executions(t, a), k.queued(t, a), k.inbox(t, a)]
        args = [eid, time.time(), "1" if binary is not None else "0", binary or b"", sender,
                *_pairs(execution)]
        raw = self._run_with("post", keys, args, also)
        text = raw.decode()
        if text == "ok":
            return None
        if text in ("gone", CHECK):
            return Rejected(None if text == "gone" else CHECK)
        return Rejected(json.loads(text))

    def drop(self, tenant: str, actor_id: str, eid: str, status: ExecutionStatus,
             fields: Mapping[str, Any]) -> bool:
        """End a message no worker has claimed (cancel, purge); False once claimed."""
        k = self.keys
        raw = self._run("drop", [k.execution(tenant, actor_id, eid),
                                 k.execution_binary(tenant, actor_id, eid),
                                 k.events(tenant, actor_id), k.queued(tenant, actor_id),
                                 k.inbox(tenant, actor_id)],
                        [eid, json.dumps(str(status)), EVENTS_MAXLEN, *_pairs(fields)])
        if _outcome(raw) is not Outcome.OK:
            return False
        self._count(lambda pipe, key: metrics.execution_ended(
            pipe, key, tenant, actor_id, str(status), fields))
        return True

    def request_cancel(self, tenant: str, actor_id: str, eid: str) -> str | None:
        """Flag a claimed execution for cancelling; the worker holding it (None if none).

        The flag covers a worker between claim and start, and an adopter; the caller
        tells the holder at once through its control list."""
        raw = self._run("cancel", [self.keys.execution(tenant, actor_id, eid)], [])
        text = raw.decode()
        return None if text in ("gone", "final", NULL) else str(json.loads(text))

    def update_actor(self, tenant: str, actor_id: str, changes: Mapping[str, Any]) -> bool:
        """Change fields of an existing actor; a deleted one is never recreated."""
        return bool(self._run("update_actor", [self.keys.actor(tenant, actor_id)],
                              _pairs(changes)))

    def update_worker(self, tenant: str, actor_id: str, worker_id: str,
                      changes: Mapping[str, Any]) -> bool:
        """Merge fields into a registration atomically; False once it is gone."""
        k = self.keys
        return bool(self._run("beat", [k.workers(tenant, actor_id),
                                       k.heartbeat(tenant, actor_id, worker_id)],
                              [worker_id, 0, json.dumps(dict(changes)) or "{}"]))

    # -- worker ---------------------------------------------------------------------
    def heartbeat(self, tenant: str, actor_id: str, worker_id: str, ttl_s: float,
                  changes: Mapping[str, Any] | None = None) -> bool:
        """Beat (and merge ``changes``) only while registered: False means fenced off."""
        k = self.keys
        return bool(self._run("beat", [k.workers(tenant, actor_id),
                                       k.heartbeat(tenant, actor_id, worker_id)],
                              [worker_id, max(1, int(ttl_s * 1000)),
                               json.dumps(dict(changes or {})) or "{}"]))

    def claim(self, tenant: str, actor_id: str, worker_id: str, revision: int, entry: str,
              eid: str) -> Outcome:
        k = self.keys
        return _outcome(self._run("claim", [
            k.workers(tenant, actor_id), k.queued(tenant, actor_id),
            k.execution(tenant, actor_id, eid), k.actor(tenant, actor_id),
            k.inbox(tenant, actor_id), k.orphans(tenant, actor_id),
            k.claimed(tenant, actor_id)],
            [worker_id, eid, revision, entry, json.dumps(worker_id)]))

    def orphans(self, tenant: str, actor_id: str, count: int = 10) -> list[str]:
        """Runs of dead workers waiting for adoption, oldest first."""
        try:
            ids = cast(list, self.r.zrange(self.keys.orphans(tenant, actor_id), 0, count - 1))
        except redis.RedisError as exc:
            raise redis_failure(exc) from exc
        return [_text(i) for i in ids]

    def adopt(self, tenant: str, actor_id: str, worker_id: str, eid: str) -> Outcome:
        """Take over the run of a dead worker (its handle is on the execution)."""
        k = self.keys
        return _outcome(self._run("adopt", [k.workers(tenant, actor_id),
                                            k.orphans(tenant, actor_id),
                                            k.execution(tenant, actor_id, eid),
                                            k.claimed(tenant, actor_id)],
                                  [worker_id, eid, json.dumps(worker_id)]))

    def running(self, tenant: str, actor_id: str, worker_id: str, eid: str,
                fields: Mapping[str, Any]) -> Outcome:
        k = self.keys
        outcome = _outcome(self._run("running", [k.workers(tenant, actor_id),
                                                 k.execution(tenant, actor_id, eid)],
                                     [worker_id, json.dumps(worker_id), *_pairs(fields)]))
        if outcome is Outcome.OK:
            self._count(lambda pipe, key: metrics.execution_started(
                pipe, key, bool(fields.get("cold")), fields.get("queue_time")))
        return outcome

    def finish(self, tenant: str, actor_id: str, worker_id: str | None, entry: str,
               eid: str, status: ExecutionStatus, fields: Mapping[str, Any]) -> Outcome:
        """Write the final record, publish the completion and acknowledge, in one step."""
        k = self.keys
        outcome = _outcome(self._run("finish", [
            k.workers(tenant, actor_id), k.execution(tenant, actor_id, eid),
            k.execution_binary(tenant, actor_id, eid), k.events(tenant, actor_id),
            k.inbox(tenant, actor_id), k.queued(tenant, actor_id), k.orphans(tenant, actor_id),
            k.claimed(tenant, actor_id), k.execution_totals(tenant, actor_id)],
            [worker_id or "", json.dumps(worker_id), entry, json.dumps(str(status)), eid,
             EVENTS_MAXLEN, *_pairs(fields)]))
        if outcome is Outcome.OK:
            self._count(lambda pipe, key: metrics.execution_ended(
                pipe, key, tenant, actor_id, str(status), fields))
        return outcome

    def release(self, tenant: str, actor_id: str, worker_id: str, entry: str,
                eid: str, refused: bool = False, most_refusals: int = 3) -> Outcome:
        """Give back a claimed message that no container ran (a transient failure);
        ``refused``: the engine answered and still failed it (counted, bounded)."""
        k = self.keys
        return _outcome(self._run("release", [
            k.workers(tenant, actor_id), k.execution(tenant, actor_id, eid),
            k.queued(tenant, actor_id), k.inbox(tenant, actor_id),
            k.executions(tenant, actor_id), k.orphans(tenant, actor_id),
            k.claimed(tenant, actor_id)], [worker_id, json.dumps(worker_id), entry, eid,
                                           "1" if refused else "0", most_refusals]))

    def read(self, tenant: str, actor_id: str, worker_id: str,
             block_ms: int) -> tuple[str, str] | None:
        """Block for the next entry delivered to this worker: (entry id, execution id)."""
        try:
            reply = self.r.xreadgroup(INBOX_GROUP, worker_id,
                                      {self.keys.inbox(tenant, actor_id): ">"},
                                      count=1, block=block_ms)
        except redis.ResponseError as exc:  # NOGROUP: the inbox went with its actor
            raise BackendUnavailable(f"inbox unavailable: {exc}") from exc
        except redis.RedisError as exc:
            raise redis_failure(exc) from exc
        for _stream, entries in cast(list, reply or []):
            for entry_id, fields in entries:
                return entry_id.decode(), fields[b"eid"].decode()
        return None

    def leave(self, tenant: str, actor_id: str, worker_id: str) -> None:
        """A worker deregisters itself (it holds nothing: its entries are acknowledged)."""
        k = self.keys
        try:
            with self.r.pipeline() as pipe:
                pipe.hdel(k.workers(tenant, actor_id), worker_id)
                pipe.delete(k.heartbeat(tenant, actor_id, worker_id),
                            k.worker_control(tenant, actor_id, worker_id))
                pipe.execute()
            pending = self.r.xpending_range(k.inbox(tenant, actor_id), INBOX_GROUP, min="-",
                                            max="+", count=1, consumername=worker_id)
            if not pending:
                self.r.xgroup_delconsumer(k.inbox(tenant, actor_id), INBOX_GROUP, worker_id)
        except redis.RedisError as exc:
            raise redis_failure(exc) from exc

    # -- scheduler ------------------------------------------------------------------
    def acquire(self, identity: str, ttl_s: float) -> int:
        """Take or renew the scheduler lock; our epoch, or 0 while another holds it."""
        k = self.keys
        try:
            return int(self._acquire(keys=[k.scheduler_lock(), k.scheduler_epoch()],
                                     args=[identity, max(1, int(ttl_s * 1000))]))
        except redis.RedisError as exc:
            raise redis_failure(exc) from exc

    def release_lock(self, identity: str) -> bool:
        try:
            return bool(self._release_lock(keys=[self.keys.scheduler_lock()], args=[identity]))
        except redis.RedisError as exc:
            raise redis_failure(exc) from exc

    def register(self, epoch: int, tenant: str, actor_id: str, record: Mapping[str, Any],
                 ttl_s: float, limit: int, revision: int) -> Outcome:
        """Register a worker (REQUESTED) before it is placed; ``limit`` -1 means none."""
        k = self.keys
        return _outcome(self._run("register", [
            k.actor(tenant, actor_id), k.workers(tenant, actor_id),
            k.heartbeat(tenant, actor_id, record["id"])],
            [epoch, record["id"], json.dumps(dict(record)), max(1, int(ttl_s * 1000)), limit,
             revision]))

    def remove(self, epoch: int, tenant: str, actor_id: str, worker_id: str,
               force: bool = False) -> Outcome:
        """Drop a registration whose heartbeat lapsed (or, ``force``, whose process ended)."""
        k = self.keys
        return _outcome(self._run("remove", [
            k.actor(tenant, actor_id), k.workers(tenant, actor_id),
            k.heartbeat(tenant, actor_id, worker_id),
            k.worker_control(tenant, actor_id, worker_id)],
            [epoch, worker_id, "1" if force else "0"]))

    def recover(self, epoch: int, tenant: str, actor_id: str, dead: str, entry: str,
                eid: str, most_recoveries: int = 3) -> Outcome:
        """Resolve one entry a dead worker held (see the module docstring)."""
        k = self.keys
        if not eid:  # the entry's content is gone: nothing to run, only to acknowledge
            try:
                self.r.xack(k.inbox(tenant, actor_id), INBOX_GROUP, entry)
            except redis.RedisError as exc:
                raise redis_failure(exc) from exc
            return Outcome.ACKED
        outcome = _outcome(self._run("recover", [
            k.actor(tenant, actor_id), k.workers(tenant, actor_id),
            k.heartbeat(tenant, actor_id, dead), k.execution(tenant, actor_id, eid),
            k.queued(tenant, actor_id), k.inbox(tenant, actor_id),
            k.executions(tenant, actor_id), k.events(tenant, actor_id),
            k.orphans(tenant, actor_id), k.claimed(tenant, actor_id)],
            [epoch, dead, json.dumps(dead), entry, eid, most_recoveries,
             json.dumps({k: json.dumps(v) for k, v in _given_up(most_recoveries).items()}),
             EVENTS_MAXLEN]))
        if outcome is Outcome.GIVEN_UP:
            self._count(lambda pipe, key: metrics.execution_ended(
                pipe, key, tenant, actor_id, str(ExecutionStatus.ERROR), {}))
        return outcome

    def _count(self, add: Callable[[Any, str], None]) -> None:
        """Add to the platform's metrics after a step succeeded, with any backend errors
        this process saw; a failure here never fails the step (it already happened)."""
        key = self.keys.metrics()
        try:
            with self.r.pipeline(transaction=False) as pipe:
                add(pipe, key)
                self.backend_errors.flush_into(pipe)
                pipe.execute()
        except redis.RedisError as exc:
            LOG.warning("metrics not counted: %s", exc)

    def verdict(self, epoch: int, tenant: str, actor_id: str, revision: int,
                fields: Mapping[str, Any]) -> Outcome:
        """Set the status of one revision of an actor (its image checked)."""
        return _outcome(self._run("verdict", [self.keys.actor(tenant, actor_id)],
                                  [epoch, revision, *_pairs(fields)]))

    def consumers(self, tenant: str, actor_id: str) -> dict[str, int]:
        """The inbox's consumers and how many entries each holds unacknowledged."""
        try:
            rows = cast(list, self.r.xinfo_consumers(self.keys.inbox(tenant, actor_id),
                                                     INBOX_GROUP))
        except redis.ResponseError:
            return {}  # no inbox: the actor is gone
        except redis.RedisError as exc:
            raise redis_failure(exc) from exc
        return {_text(row["name"]): int(row["pending"]) for row in rows}

    def held(self, tenant: str, actor_id: str, consumer: str) -> list[tuple[str, str]]:
        """Entries delivered to ``consumer`` and not acknowledged: (entry id, execution id)."""
        inbox = self.keys.inbox(tenant, actor_id)
        try:
            rows = cast(list, self.r.xpending_range(inbox, INBOX_GROUP, min="-", max="+",
                                                    count=1000, consumername=consumer))
            return [(entry, _eid_of(self.r, inbox, entry))
                    for entry in (_text(row["message_id"]) for row in rows)]
        except redis.ResponseError:
            return []
        except redis.RedisError as exc:
            raise redis_failure(exc) from exc

    def holders(self, tenant: str, actor_id: str) -> dict[str, str]:
        """Execution id -> the worker holding it, for every claimed or adopted execution."""
        k = self.keys
        try:
            eids = sorted(_text(e) for e in cast(set, self.r.smembers(k.claimed(tenant,
                                                                                actor_id))))
            with self.r.pipeline(transaction=False) as pipe:
                for eid in eids:
                    pipe.hget(k.execution(tenant, actor_id, eid), "worker_id")
                raw = pipe.execute()
        except redis.RedisError as exc:
            raise redis_failure(exc) from exc
        return {eid: json.loads(h) for eid, h in zip(eids, raw, strict=True)
                if h and json.loads(h)}

    def forget_consumer(self, tenant: str, actor_id: str, consumer: str) -> None:
        try:
            self.r.xgroup_delconsumer(self.keys.inbox(tenant, actor_id), INBOX_GROUP, consumer)
        except redis.ResponseError:
            return
        except redis.RedisError as exc:
            raise redis_failure(exc) from exc


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _eid_of(client: redis.Redis, inbox: str, entry: str) -> str:
    """The execution an entry names ('' when the entry was deleted from the stream)."""
    rows = cast(list, client.xrange(inbox, min=entry, max=entry, count=1))
    if not rows or not rows[0][1]:
        return ""
    return _text(rows[0][1][b"eid"])
