"""The Redis store: actors, executions, the inbox, state, workers and events.

Records are Redis hashes whose values are JSON, so partial updates (one field)
are single HSETs and reads need no schema. Every write on the message path
(posting, claiming, finishing, worker registrations) goes through
``jobs.inbox``, which this store exposes as ``store.inbox``; the store itself
reads, and writes what no protocol step depends on (state, live logs, events).

Redis errors are turned into ``BackendUnavailable`` at this boundary.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

import orjson
import redis

from jobs import round_trip
from jobs.errors import Conflict, NotFound
from jobs.ids import new_id
from jobs.inbox import Inbox, redis_failure
from jobs.keys import INBOX_GROUP, Keys
from jobs.settings import Settings
from jobs.status import FINAL_EXECUTION, ActorStatus, ExecutionStatus
from jobs.timeutil import now_iso, to_iso

T = TypeVar("T")
# The growth stream of a live log: entries kept (a follower needs the newest id only),
# and its life after the last append.
LOG_GROWTH_KEPT = 8
LOG_GROWTH_TTL_S = 3600


@dataclass(frozen=True)
class LogCursor:
    """Where a follower of a live log has read to: its growth stream and the actor's
    events (``0-0`` when either has no entry yet)."""

    growth: str
    events: str

def connect(settings: Settings, kind: type[redis.Redis] = redis.Redis) -> redis.Redis:
    """One Redis client per process, bytes in and out (logs and binary messages).

    The read timeout must outlast the longest blocking read (a synchronous message
    waits up to ``sync_timeout_s``); redis-py's own default (5 s) would cut it short.
    """
    client = kind.from_url(
        settings.redis_url,
        password=settings.redis_password.reveal() or None,
        socket_connect_timeout=settings.redis_connect_timeout_s,
        max_connections=settings.redis_max_connections,
        socket_timeout=settings.sync_timeout_s + 10,
        health_check_interval=30,
    )
    # what no request needs: each of api_worker_connections may hold one at once
    round_trip.keep_at_most(client, settings.redis_max_connections
                            - settings.api_worker_connections)
    return client


def _silent_as_empty(live: Any, pending: Any) -> bytes | None:
    """``live_log`` from the replies of its reads (see there)."""
    live, pending = round_trip.checked(live), round_trip.checked(pending)
    return b"" if live is None and pending else live


def _translate(func: Callable[..., T]) -> Callable[..., T]:
    """Map Redis connection failures to BackendUnavailable (HTTP 503)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return func(*args, **kwargs)
        except redis.RedisError as exc:
            raise redis_failure(exc) from exc

    return wrapper


def encode(record: Mapping[str, Any]) -> dict[Any, Any]:
    return {key: json.dumps(value) for key, value in record.items()}


def _pairs_of(flat: list[Any]) -> dict[Any, Any]:
    """A script's HGETALL reply (a flat list) as a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


@functools.lru_cache(maxsize=64)
def _encoded(fields: tuple[str, ...]) -> tuple[bytes, ...]:
    return tuple(field.encode() for field in fields)


def decode(raw: Mapping[bytes, bytes | None]) -> dict[str, Any]:
    """A record as stored (each field JSON); orjson parses it several times faster than
    the standard library, which stays the fallback for what orjson refuses (NaN)."""
    try:
        return {key.decode(): orjson.loads(value) for key, value in raw.items()
                if value is not None}
    except orjson.JSONDecodeError:
        return {key.decode(): json.loads(value) for key, value in raw.items()
                if value is not None}


PAGE_ACTOR_FIELDS = (b"id", b"owner")
# KEYS: actor, its executions index, its totals. ARGV: offset, end, the execution-key
# infix, then the fields to read of each execution. The records are read under the
# actor's key, in its hash slot ({tenant/actor}), though not declared.
ACTOR_AND_PAGE = """
local actor = redis.call('HMGET', KEYS[1], 'id', 'owner')
if not actor[1] then return {{}} end
local records = {}
for i, eid in ipairs(redis.call('ZRANGE', KEYS[2], ARGV[1], ARGV[2])) do
  records[i] = redis.call('HMGET', KEYS[1] .. ARGV[3] .. eid, unpack(ARGV, 4))
end
return {actor, redis.call('ZCARD', KEYS[2]), redis.call('HGETALL', KEYS[3]), records}
"""


class Store:
    """All reads and writes of platform records in Redis."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.r = client
        self.keys = keys
        self.inbox = Inbox(client, keys)
        self._actor_and_page = client.register_script(ACTOR_AND_PAGE)
        self._platform_id: str | None = None

    @_translate
    def platform_id(self) -> str:
        """This platform's id (its Redis and prefix), made by the first process to ask."""
        if self._platform_id is None:
            key = self.keys.platform()
            self.r.set(key, new_id(), nx=True)
            self._platform_id = cast(bytes, self.r.get(key)).decode()
        return self._platform_id

    @classmethod
    def from_settings(cls, settings: Settings) -> Store:
        return cls(connect(settings), Keys(settings.prefix))

    # -- actors -----------------------------------------------------------
    @_translate
    def create_actor(self, actor: Mapping[str, Any]) -> None:
        """The record, the indexes and the inbox with its consumer group, in one transaction."""
        tenant, actor_id = actor["tenant"], actor["id"]
        with self.r.pipeline() as pipe:
            pipe.hset(self.keys.actor(tenant, actor_id), mapping=encode(actor))
            pipe.sadd(self.keys.tenant_actors(tenant), actor_id)
            pipe.sadd(self.keys.all_actors(), f"{tenant}/{actor_id}")
            pipe.xgroup_create(self.keys.inbox(tenant, actor_id), INBOX_GROUP, id="0",
                               mkstream=True)
            pipe.execute()

    @_translate
    def get_actor(self, tenant: str, actor_id: str) -> dict[str, Any]:
        raw = round_trip.hgetall(self.r, self.keys.actor(tenant, actor_id))
        if not raw:
            raise NotFound(f"actor {actor_id} not found")
        return decode(cast(dict, raw))

    def update_actor(self, tenant: str, actor_id: str, changes: Mapping[str, Any]) -> None:
        """Change an existing actor; one atomic step, so a deleted actor never comes back."""
        if not self.inbox.update_actor(tenant, actor_id, changes):
            raise NotFound(f"actor {actor_id} not found")

    @_translate
    def advance_cron(self, tenant: str, actor_id: str, expected: str, following: str) -> bool:
        """Move ``cron_next_ex`` from ``expected`` to ``following``; False when it is no
        longer ``expected`` (fired already) or the actor is gone."""
        key = self.keys.actor(tenant, actor_id)
        with self.r.pipeline() as pipe:
            try:
                pipe.watch(key)
                current = pipe.hget(key, "cron_next_ex")
                if current is None or json.loads(current) != expected:
                    return False
                pipe.multi()
                pipe.hset(key, "cron_next_ex", json.dumps(following))
                pipe.execute()
            except redis.WatchError:
                return False
        return True

    def mark_deleting(self, tenant: str, actor_id: str) -> None:
        """From now on the actor takes no messages (``post`` checks it in the same step)."""
        self.update_actor(tenant, actor_id, {"status": str(ActorStatus.SHUTTING_DOWN)})

    @_translate
    def list_actors(self, tenant: str) -> list[dict[str, Any]]:
        members = cast(set, self.r.smembers(self.keys.tenant_actors(tenant)))
        ids = sorted(m.decode() for m in members)
        with self.r.pipeline(transaction=False) as pipe:
            for actor_id in ids:
                pipe.hgetall(self.keys.actor(tenant, actor_id))
            raws = pipe.execute()
        actors = [decode(raw) for raw in raws if raw]
        return sorted(actors, key=lambda a: a.get("create_time", ""))

    @_translate
    def actor_exists(self, tenant: str, actor_id: str) -> bool:
        return bool(self.r.exists(self.keys.actor(tenant, actor_id)))

    @_translate
    def all_actor_refs(self) -> list[tuple[str, str]]:
        members = cast(set, self.r.smembers(self.keys.all_actors()))
        return [_split_ref(m.decode()) for m in members]

    @_translate
    def actor_refs_slice(self, cursor: int, count: int) -> tuple[int, list[tuple[str, str]]]:
        """About ``count`` actors from ``cursor`` on (SSCAN: every actor present for a whole
        sweep is returned at least once); the next cursor, 0 when the sweep is done."""
        nxt, members = cast(tuple, self.r.sscan(self.keys.all_actors(), cursor, count=count))
        return int(nxt), [_split_ref(m.decode()) for m in members]

    @_translate
    def sweep_flags(self, refs: list[tuple[str, str]]) -> list[tuple[bool, bool]]:
        """For each actor, in one round trip: (needs a reconcile, has execution records).
        An actor needs none when it is settled (READY or ERROR), holds no worker, has
        nothing queued or orphaned, and no schedule, warm start, request or minimum."""
        with self.r.pipeline(transaction=False) as pipe:
            for tenant, actor_id in refs:
                pipe.hmget(self.keys.actor(tenant, actor_id), "status", "cron_on",
                           "min_workers", "warm_start", "workers_requested")
                pipe.hlen(self.keys.workers(tenant, actor_id))
                pipe.zcard(self.keys.queued(tenant, actor_id))
                pipe.zcard(self.keys.orphans(tenant, actor_id))
                pipe.zcard(self.keys.executions(tenant, actor_id))
            replies = pipe.execute()
        flags = []
        for i in range(0, len(replies), 5):
            fields, workers, queued, orphans, executions = replies[i:i + 5]
            status, *extra = [json.loads(v) if v is not None else None for v in fields]
            settled = status in ("READY", "ERROR") and not any(extra)
            flags.append((not (settled and not workers and not queued and not orphans),
                          bool(executions)))
        return flags

    @_translate
    def actor_count(self) -> int:
        return int(cast(int, self.r.scard(self.keys.all_actors())))

    @_translate
    def delete_actor(self, tenant: str, actor_id: str) -> list[str]:
        """Remove every record of the actor; return its execution ids (for log cleanup).

        The keys are derived from the actor's indexes, so no keyspace scan is needed.
        """
        k = self.keys
        execution_ids = [e.decode() for e in cast(list, self.r.zrange(
            k.executions(tenant, actor_id), 0, -1))]
        worker_ids = [w.decode() for w in cast(list, self.r.hkeys(k.workers(tenant, actor_id)))]
        doomed = [k.actor(tenant, actor_id), k.inbox(tenant, actor_id),
                  k.queued(tenant, actor_id), k.orphans(tenant, actor_id),
                  k.claimed(tenant, actor_id),
                  k.executions(tenant, actor_id), k.execution_totals(tenant, actor_id),
                  k.state(tenant, actor_id), k.events(tenant, actor_id),
                  k.workers(tenant, actor_id)]
        for eid in execution_ids:
            doomed += [k.execution(tenant, actor_id, eid), k.execution_logs(tenant, actor_id, eid),
                       k.execution_log_growth(tenant, actor_id, eid),
                       k.execution_binary(tenant, actor_id, eid),
                       k.execution_results(tenant, actor_id, eid)]
        for wid in worker_ids:
            doomed += [k.heartbeat(tenant, actor_id, wid), k.worker_control(tenant, actor_id, wid)]
        self._leave_runs_for_removal(tenant, actor_id, execution_ids)
        self._delete_logs_later(tenant, actor_id, execution_ids)
        # Wake whoever blocks on the actor's events (a synchronous message): it reads
        # again, finds the execution gone and answers 404 at once.
        self.r.xadd(k.events(tenant, actor_id), {"event": "ACTOR_DELETED"})
        with self.r.pipeline() as pipe:
            for start in range(0, len(doomed), 500):
                pipe.delete(*doomed[start:start + 500])
            pipe.srem(k.tenant_actors(tenant), actor_id)
            pipe.srem(k.all_actors(), f"{tenant}/{actor_id}")
            pipe.execute()
        return execution_ids

    def _delete_logs_later(self, tenant: str, actor_id: str, eids: list[str]) -> None:
        """S3 objects go in the background (``logs_to_delete``), in batches."""
        refs = [f"{tenant}/{actor_id}/{eid}" for eid in eids]
        for start in range(0, len(refs), 1000):
            self.r.sadd(self.keys.logs_to_delete(), *refs[start:start + 1000])

    @_translate
    def logs_deletion_batch(self, count: int = 100) -> list[tuple[str, str, str]]:
        refs = cast(list, self.r.srandmember(self.keys.logs_to_delete(), count))
        return [cast(tuple[str, str, str], tuple(r.decode().split("/"))) for r in refs]

    @_translate
    def logs_deleted(self, tenant: str, actor_id: str, eid: str) -> None:
        self.r.srem(self.keys.logs_to_delete(), f"{tenant}/{actor_id}/{eid}")

    @_translate
    def expire_logs_at(self, tenant: str, actor_id: str, eid: str, at: float) -> None:
        self.r.zadd(self.keys.logs_expiry(), {f"{tenant}/{actor_id}/{eid}": at})

    @_translate
    def logs_due_to_expire(self, now: float,
                           count: int = 100) -> list[tuple[str, str, str, float]]:
        """Logs due to expire: tenant, actor, execution, and when they were due."""
        refs = cast(list, self.r.zrangebyscore(self.keys.logs_expiry(), "-inf", now,
                                               start=0, num=count, withscores=True))
        return [(*cast(tuple[str, str, str], tuple(r.decode().split("/"))), float(due))
                for r, due in refs]

    @_translate
    def logs_expired(self, tenant: str, actor_id: str, eid: str, when: str) -> None:
        """The logs are gone: say so on the record (if it is still there)."""
        key = self.keys.execution(tenant, actor_id, eid)
        with self.r.pipeline() as pipe:
            pipe.delete(self.keys.execution_logs(tenant, actor_id, eid),
                        self.keys.execution_log_growth(tenant, actor_id, eid))
            pipe.zrem(self.keys.logs_expiry(), f"{tenant}/{actor_id}/{eid}")
            pipe.execute()
        if self.r.exists(key):
            self.r.hset(key, "logs_expired", json.dumps(when))

    @_translate
    def trim_executions(self, tenant: str, actor_id: str, keep: int, older_than: float,
                        settled_s: float = 300.0) -> list[str]:
        """Remove finished executions beyond the newest ``keep`` or received before
        ``older_than``, once finished ``settled_s`` ago (a long run that just ended
        keeps its record and results a while); their S3 objects go later. The ids
        removed."""
        key = self.keys.executions(tenant, actor_id)
        total = int(cast(int, self.r.zcard(key)))
        candidates = {e.decode() for e in cast(list, self.r.zrangebyscore(
            key, "-inf", older_than, start=0, num=1000))}
        if total > keep:
            candidates |= {e.decode() for e in cast(list, self.r.zrange(
                key, 0, min(total - keep, 1000) - 1))}
        if not candidates:
            return []
        ids = sorted(candidates)
        with self.r.pipeline(transaction=False) as pipe:
            for eid in ids:
                pipe.hmget(self.keys.execution(tenant, actor_id, eid), ["status", "finish_time"])
            rows = pipe.execute()
        final = {json.dumps(str(s)).encode() for s in FINAL_EXECUTION}
        settled = to_iso(datetime.now(UTC) - timedelta(seconds=settled_s))
        done = [eid for eid, (status, finished) in zip(ids, rows, strict=True)
                if status is None or (status in final and
                                      (json.loads(finished or b"null") or "") <= settled)]
        k = self.keys
        with self.r.pipeline() as pipe:
            for eid in done:
                pipe.zrem(key, eid)
                pipe.delete(k.execution(tenant, actor_id, eid),
                            k.execution_logs(tenant, actor_id, eid),
                            k.execution_log_growth(tenant, actor_id, eid),
                            k.execution_results(tenant, actor_id, eid))
            pipe.execute()
        self._delete_logs_later(tenant, actor_id, done)
        return done

    @_translate
    def execution_statuses(self, refs: list[tuple[str, str, str]]) -> list[str | None]:
        """The status of each (tenant, actor, execution), None for one that is gone; one
        round trip."""
        with self.r.pipeline(transaction=False) as pipe:
            for tenant, actor_id, eid in refs:
                pipe.hget(self.keys.execution(tenant, actor_id, eid), "status")
            return [json.loads(raw) if raw else None for raw in pipe.execute()]

    def _leave_runs_for_removal(self, tenant: str, actor_id: str, eids: list[str]) -> None:
        """Runs still on the engine (a dead worker's, or one being cancelled) outlive the
        records: their handles go to the scheduler, which removes them."""
        with self.r.pipeline(transaction=False) as pipe:
            for eid in eids:
                pipe.hmget(self.keys.execution(tenant, actor_id, eid), ["status", "handle"])
            rows = pipe.execute()
        handles = [json.loads(handle) for status, handle in rows
                   if handle and status and json.loads(status) == ExecutionStatus.RUNNING]
        if handles:
            self.r.sadd(self.keys.runs_to_remove(), *handles)

    # -- messages and executions ------------------------------------------
    def post_message(self, execution: Mapping[str, Any], binary: bytes | None = None,
                     sender: str = "") -> bool:
        """Record the execution and queue its message, only while the actor takes
        messages. With a ``sender`` (see ``Inbox.post``) False: nothing was posted, the
        caller checks the sender's right and the actor itself."""
        tenant, actor_id = execution["tenant"], execution["actor_id"]
        # The wake-up rides in the same round trip; should it fail, the scheduler's sweep
        # finds the message (scheduler_sweep_s).
        rejected = self.inbox.post(execution, binary, sender=sender,
                                   also=[self._wake_command(tenant, actor_id, "message")])
        if rejected is None:
            return True
        if sender:
            return False
        if rejected.status is None:
            raise NotFound(f"actor {actor_id} not found")
        raise Conflict(f"actor {actor_id} is {rejected.status}; it takes no messages")

    @_translate
    def get_execution(self, tenant: str, actor_id: str, eid: str) -> dict[str, Any]:
        raw = round_trip.hgetall(self.r, self.keys.execution(tenant, actor_id, eid))
        if not raw:
            raise NotFound(f"execution {eid} of actor {actor_id} not found")
        return decode(cast(dict, raw))

    @_translate
    def list_executions(
        self, tenant: str, actor_id: str, offset: int = 0, limit: int | None = None
    ) -> tuple[int, list[dict[str, Any]]]:
        total, records, _totals = self.executions_page(tenant, actor_id, offset, limit)
        return total, records

    @_translate
    def executions_page(self, tenant: str, actor_id: str, offset: int = 0,
                        limit: int | None = None, fields: tuple[str, ...] | None = None
                        ) -> tuple[int, list[dict[str, Any]], dict[str, float]]:
        """(count, the page's records, the totals) in two round trips: the index and the
        totals together, then the records (only ``fields`` of each, when named: a
        listing shows a few of an execution's two dozen)."""
        key = self.keys.executions(tenant, actor_id)
        end = -1 if limit is None else offset + limit - 1
        with self.r.pipeline(transaction=False) as pipe:
            pipe.zcard(key)
            pipe.zrange(key, offset, end)
            pipe.hgetall(self.keys.execution_totals(tenant, actor_id))
            total, members, sums = pipe.execute()
        actor_key = self.keys.actor(tenant, actor_id)
        with self.r.pipeline(transaction=False) as pipe:
            for eid in members:
                record_key = self.keys.execution_of(actor_key, eid.decode())
                if fields:
                    pipe.hmget(record_key, fields)
                else:
                    pipe.hgetall(record_key)
            raws = pipe.execute() if members else []
        totals = {k.decode(): float(v) for k, v in cast(dict, sums).items()}
        if fields:
            records = [decode(dict(zip(_encoded(fields), raw, strict=True)))
                       for raw in raws if raw[0] is not None]
        else:
            records = [decode(raw) for raw in raws if raw]
        return int(total), records, totals

    @_translate
    def actor_and_executions_page(self, tenant: str, actor_id: str, offset: int,
                                  limit: int | None, fields: tuple[str, ...]
                                  ) -> tuple[dict[str, Any] | None, int, list[dict[str, Any]],
                                             dict[str, float]]:
        """The actor's id and owner, all a listing needs of it (None: no actor by this
        id), and ``executions_page`` of it, ``fields`` of each, in one round trip (a
        listing's hot path: the whole actor record cost a third of its decoding)."""
        end = -1 if limit is None else offset + limit - 1
        raw = cast(list, round_trip.script(
            self.r, self._actor_and_page,
            [self.keys.actor(tenant, actor_id), self.keys.executions(tenant, actor_id),
             self.keys.execution_totals(tenant, actor_id)],
            [offset, end, Keys.EXECUTION_INFIX, *fields]))
        if not raw[0]:
            return None, 0, [], {}
        actor = decode(dict(zip(PAGE_ACTOR_FIELDS, raw[0], strict=True)))
        totals = {k.decode(): float(v) for k, v in _pairs_of(raw[2]).items()}
        names = _encoded(fields)
        records = [decode(dict(zip(names, values, strict=True))) for values in raw[3]
                   if values[0] is not None]
        return actor, int(raw[1]), records, totals

    # -- events out -----------------------------------------------------------------
    @_translate
    def emit_event(self, document: Mapping[str, Any], most: int) -> None:
        """Queue an actor event for delivery; the oldest go first once ``most`` wait."""
        self.r.xadd(self.keys.events_out(), {"event": json.dumps(document)}, maxlen=most,
                    approximate=True)

    @_translate
    def read_events(self, group: str, consumer: str, block_ms: int, count: int = 50,
                    pending: bool = False) -> list[tuple[str, dict[str, Any]]]:
        """New events for this consumer group (created on first use), blocking a while;
        ``pending``: those this consumer read before and never acknowledged (a restart)."""
        key = self.keys.events_out()
        try:
            self.r.xgroup_create(key, group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        replies = cast(list, self.r.xreadgroup(
            group, consumer, {key: "0" if pending else ">"}, count=count,
            block=None if pending or not block_ms else block_ms))  # 0: no wait
        return [(entry_id.decode(), json.loads(fields[b"event"]))
                for _stream, entries in replies for entry_id, fields in entries
                if fields]  # a pending entry trimmed away since has no fields

    @_translate
    def ack_event(self, group: str, entry_id: str) -> None:
        self.r.xack(self.keys.events_out(), group, entry_id)
        self.r.xdel(self.keys.events_out(), entry_id)

    @_translate
    def queue_webhook(self, job: Mapping[str, Any], due: float, most: int) -> bool:
        """Schedule one webhook post; False (dropped) when ``most`` wait already."""
        key = self.keys.webhooks_due()
        if int(cast(int, self.r.zcard(key))) >= most:
            return False
        self.r.zadd(key, {json.dumps(job, sort_keys=True): due})
        return True

    @_translate
    def due_webhooks(self, now: float, lease_s: float,
                     count: int = 20) -> tuple[list[dict[str, Any]], float | None]:
        """Lease the posts due by ``now`` (they come due again after ``lease_s`` unless
        ``webhook_done``); and when the next one is due."""
        key = self.keys.webhooks_due()
        taken = []
        for raw in cast(list, self.r.zrangebyscore(key, "-inf", now, start=0, num=count)):
            # moved past now only if still due: one sender leases each
            if self.r.zadd(key, {raw: now + lease_s}, xx=True, gt=True, ch=True):
                taken.append(json.loads(raw))
        following = cast(list, self.r.zrange(key, 0, 0, withscores=True))
        return taken, (float(following[0][1]) if following else None)

    @_translate
    def webhook_done(self, job: Mapping[str, Any]) -> None:
        leased = {**job, "attempt": job["attempt"] - 1}  # as it was queued
        self.r.zrem(self.keys.webhooks_due(), json.dumps(leased, sort_keys=True))

    @_translate
    def record_webhook(self, tenant: str, actor_id: str, outcome: Mapping[str, Any]) -> None:
        self.r.hset(self.keys.webhook_status(tenant), actor_id, json.dumps(outcome))

    @_translate
    def last_webhook(self, tenant: str, actor_id: str) -> dict[str, Any] | None:
        raw = self.r.hget(self.keys.webhook_status(tenant), actor_id)
        return json.loads(cast(bytes, raw)) if raw else None

    # -- results ------------------------------------------------------------------
    @_translate
    def push_result(self, tenant: str, actor_id: str, eid: str, data: bytes,
                    most: int) -> bool:
        """Keep one result, in order; False once ``most`` wait unread."""
        key = self.keys.execution_results(tenant, actor_id, eid)
        if int(cast(int, self.r.rpush(key, data))) > most:
            self.r.rpop(key)  # over the cap (also under races): one comes off again
            return False
        return True

    @_translate
    def pop_result(self, tenant: str, actor_id: str, eid: str) -> bytes | None:
        return cast(bytes | None, self.r.lpop(self.keys.execution_results(tenant, actor_id, eid)))

    @_translate
    def first_result_and_live_log(self, tenant: str, actor_id: str,
                                  eid: str) -> tuple[bytes | None, bytes | None]:
        """The next unread result (taken) and ``live_log``, in one round trip."""
        first, live, pending = round_trip.send(self.r, [
            ("LPOP", self.keys.execution_results(tenant, actor_id, eid)),
            *self._live_log_reads(tenant, actor_id, eid)])
        return round_trip.checked(first), _silent_as_empty(live, pending)

    @_translate
    def expire_results(self, tenant: str, actor_id: str, eid: str, ttl_s: float) -> None:
        self.r.expire(self.keys.execution_results(tenant, actor_id, eid), max(1, int(ttl_s)))

    @_translate
    def execution_totals(self, tenant: str, actor_id: str) -> dict[str, float]:
        raw = cast(dict, self.r.hgetall(self.keys.execution_totals(tenant, actor_id)))
        return {key.decode(): float(value) for key, value in raw.items()}

    @_translate
    def queued_ids(self, tenant: str, actor_id: str) -> list[str]:
        ids = cast(list, self.r.zrange(self.keys.queued(tenant, actor_id), 0, -1))
        return [e.decode() for e in ids]

    @_translate
    def orphan_count(self, tenant: str, actor_id: str) -> int:
        return int(cast(int, self.r.zcard(self.keys.orphans(tenant, actor_id))))

    @_translate
    def runs_to_remove(self, count: int = 100) -> list[str]:
        return [m.decode() for m in cast(list, self.r.srandmember(
            self.keys.runs_to_remove(), count) or [])]

    @_translate
    def run_removed(self, handle: str) -> None:
        self.r.srem(self.keys.runs_to_remove(), handle)

    @_translate
    def queued_count(self, tenant: str, actor_id: str) -> int:
        return int(cast(int, self.r.zcard(self.keys.queued(tenant, actor_id))))

    def drop_queued(self, tenant: str, actor_id: str, eid: str, reason: str,
                    status: ExecutionStatus = ExecutionStatus.ERROR) -> bool:
        """End a message no worker has claimed; False when a worker claimed it first."""
        return self.inbox.drop(tenant, actor_id, eid, status, {
            "status_message": reason, "finish_time": now_iso()})

    @_translate
    def get_binary(self, tenant: str, actor_id: str, eid: str) -> bytes | None:
        return cast(bytes | None, self.r.get(self.keys.execution_binary(tenant, actor_id, eid)))

    # -- live logs ----------------------------------------------------------
    @_translate
    def append_log(self, tenant: str, actor_id: str, eid: str, chunk: bytes) -> int:
        """Append to the live log, then wake its followers (in that order: a follower
        woken reads what woke it). The growth stream keeps a few entries (a follower
        needs the newest id only) and goes an hour after the last append."""
        growth = self.keys.execution_log_growth(tenant, actor_id, eid)
        with self.r.pipeline(transaction=False) as pipe:
            pipe.append(self.keys.execution_logs(tenant, actor_id, eid), chunk)
            pipe.xadd(growth, {"n": len(chunk)}, maxlen=LOG_GROWTH_KEPT, approximate=True)
            pipe.expire(growth, LOG_GROWTH_TTL_S)
            size = pipe.execute()[0]
        return int(size)

    @_translate
    def log_cursor(self, tenant: str, actor_id: str, eid: str) -> LogCursor:
        """The newest ids of the log's growth stream and of the actor's events (where
        every final status is announced): a wait from here sees anything later."""
        with self.r.pipeline(transaction=False) as pipe:
            pipe.xrevrange(self.keys.execution_log_growth(tenant, actor_id, eid), count=1)
            pipe.xrevrange(self.keys.events(tenant, actor_id), count=1)
            grew, events = pipe.execute()
        return LogCursor(_newest_id(grew), _newest_id(events))

    @_translate
    def log_since(self, tenant: str, actor_id: str, eid: str,
                  offset: int) -> tuple[bytes | None, str | None]:
        """The live log from byte ``offset`` (None when there is no live log) and the
        execution's status, read together: a final status means the log is whole."""
        key = self.keys.execution_logs(tenant, actor_id, eid)
        with self.r.pipeline(transaction=True) as pipe:
            pipe.exists(key)
            pipe.getrange(key, offset, -1)
            pipe.hget(self.keys.execution(tenant, actor_id, eid), "status")
            exists, data, status = pipe.execute()
        return (bytes(data) if exists else None), (json.loads(status) if status else None)

    @_translate
    def wait_for_log(self, tenant: str, actor_id: str, eid: str, cursor: LogCursor,
                     timeout_s: float) -> LogCursor:
        """Block until the log grows or the actor announces an event, at most
        ``timeout_s``; the cursor past what was seen."""
        growth = self.keys.execution_log_growth(tenant, actor_id, eid)
        events = self.keys.events(tenant, actor_id)
        reply: Any = self.r.xread({growth: cursor.growth, events: cursor.events},
                             count=LOG_GROWTH_KEPT, block=max(1, int(timeout_s * 1000)))
        seen = {_decoded(name): _decoded(entries[-1][0])
                for name, entries in reply or [] if entries}
        return LogCursor(seen.get(growth, cursor.growth), seen.get(events, cursor.events))

    @_translate
    def live_log(self, tenant: str, actor_id: str, eid: str) -> bytes | None:
        """The log in Redis: while the run goes on, and after it until the copy to S3
        is made. b"" for a run whose logs wait for that copy with no live copy: it
        printed nothing (the copy removes the live copy and the mark together, and the
        log is read before the mark), so no reader need ask S3 for an object that may
        not be there yet. None: there is none (read S3, if the run is over)."""
        live, pending = round_trip.send(self.r, self._live_log_reads(tenant, actor_id, eid))
        return _silent_as_empty(live, pending)

    def _live_log_reads(self, tenant: str, actor_id: str, eid: str) -> list[tuple[str, ...]]:
        return [("GET", self.keys.execution_logs(tenant, actor_id, eid)),
                ("SISMEMBER", self.keys.logs_pending(), f"{tenant}/{actor_id}/{eid}")]

    @_translate
    def drop_live_log(self, tenant: str, actor_id: str, eid: str) -> None:
        self.r.delete(self.keys.execution_logs(tenant, actor_id, eid),
                      self.keys.execution_log_growth(tenant, actor_id, eid))

    @_translate
    def mark_logs_pending(self, tenant: str, actor_id: str, eid: str) -> None:
        """The logs stay in Redis until the scheduler copies them to S3."""
        self.r.sadd(self.keys.logs_pending(), f"{tenant}/{actor_id}/{eid}")

    @_translate
    def logs_unmarked(self, tenant: str, actor_id: str, eid: str) -> None:
        """Not ours to copy after all (another worker holds the execution now)."""
        self.r.srem(self.keys.logs_pending(), f"{tenant}/{actor_id}/{eid}")

    @_translate
    def logs_pending(self, count: int = 100) -> list[tuple[str, str, str]]:
        members = cast(list, self.r.srandmember(self.keys.logs_pending(), count) or [])
        return [cast(tuple[str, str, str], tuple(m.decode().split("/", 2))) for m in members]

    @_translate
    def logs_copied(self, tenant: str, actor_id: str, eid: str) -> None:
        with self.r.pipeline() as pipe:
            pipe.delete(self.keys.execution_logs(tenant, actor_id, eid),
                        self.keys.execution_log_growth(tenant, actor_id, eid))
            pipe.srem(self.keys.logs_pending(), f"{tenant}/{actor_id}/{eid}")
            pipe.execute()

    # -- state --------------------------------------------------------------
    @_translate
    def get_state(self, tenant: str, actor_id: str) -> Any:
        raw = self.r.get(self.keys.state(tenant, actor_id))
        return {} if raw is None else json.loads(cast(bytes, raw))

    @_translate
    def set_state(self, tenant: str, actor_id: str, value: Any) -> None:
        self.r.set(self.keys.state(tenant, actor_id), json.dumps(value))

    # -- events -------------------------------------------------------------
    @_translate
    def last_event_id(self, tenant: str, actor_id: str) -> str:
        last = cast(list, self.r.xrevrange(self.keys.events(tenant, actor_id), count=1))
        return last[0][0].decode() if last else "0-0"

    @_translate
    def wait_events(
        self, tenant: str, actor_id: str, after: str, timeout_s: float
    ) -> list[tuple[str, dict[str, str]]]:
        """Block up to ``timeout_s`` for events after ``after``; no polling."""
        reply = self.r.xread({self.keys.events(tenant, actor_id): after},
                             block=max(1, int(timeout_s * 1000)), count=100)
        events = []
        for _stream, entries in cast(list, reply or []):
            for entry_id, fields in entries:
                events.append((entry_id.decode(),
                               {k.decode(): v.decode() for k, v in fields.items()}))
        return events

    # -- workers ------------------------------------------------------------
    def update_worker(self, tenant: str, actor_id: str, worker_id: str,
                      changes: Mapping[str, Any]) -> bool:
        return self.inbox.update_worker(tenant, actor_id, worker_id, changes)

    @_translate
    def workers(self, tenant: str, actor_id: str) -> list[dict[str, Any]]:
        raw = cast(dict, self.r.hgetall(self.keys.workers(tenant, actor_id)))
        return [json.loads(value) for value in raw.values()]

    def alive_worker_ids(self, tenant: str, actor_id: str, worker_ids: Iterable[str]) -> set[str]:
        ids = list(worker_ids)
        beating = self.beating([(tenant, actor_id, wid) for wid in ids]) if ids else []
        return {wid for wid, flag in zip(ids, beating, strict=True) if flag}

    @_translate
    def send_control(self, tenant: str, actor_id: str, worker_id: str, command: str,
                     ttl_s: float) -> None:
        """Tell a worker to ``stop`` or ``cancel:<eid>``; it reads at once (BLPOP)."""
        key = self.keys.worker_control(tenant, actor_id, worker_id)
        with self.r.pipeline() as pipe:
            pipe.rpush(key, command)
            pipe.pexpire(key, int(ttl_s * 1000))
            pipe.execute()

    @_translate
    def wait_control(self, tenant: str, actor_id: str, worker_id: str,
                     timeout_s: float) -> str | None:
        reply = self.r.blpop([self.keys.worker_control(tenant, actor_id, worker_id)],
                             timeout=timeout_s)
        return None if reply is None else cast(tuple, reply)[1].decode()

    @_translate
    def offer_placement(self, tenant: str, actor_id: str, worker_id: str, ttl_s: float) -> None:
        """A registered worker id for the next allocation of the actor's worker job to take
        up (Nomad scales a count, it cannot start a named worker)."""
        key = self.keys.placements(tenant, actor_id)
        with self.r.pipeline() as pipe:
            pipe.rpush(key, worker_id)
            pipe.pexpire(key, int(ttl_s * 1000))
            pipe.execute()

    @_translate
    def claim_placement(self, tenant: str, actor_id: str, timeout_s: float) -> str | None:
        reply = self.r.blpop([self.keys.placements(tenant, actor_id)], timeout=timeout_s)
        return None if reply is None else cast(tuple, reply)[1].decode()

    @_translate
    def get_worker(self, tenant: str, actor_id: str, worker_id: str) -> dict[str, Any]:
        raw = self.r.hget(self.keys.workers(tenant, actor_id), worker_id)
        if raw is None:
            raise NotFound(f"worker {worker_id} of actor {actor_id} not found")
        return dict(json.loads(cast(bytes, raw)))

    @_translate
    def starving(self) -> bool:
        """Do actors wait for a worker at the host cap? (set by the scheduler, with a TTL)."""
        return bool(self.r.exists(self.keys.starving()))

    @_translate
    def set_starving(self, count: int, ttl_s: float) -> None:
        if count:
            self.r.set(self.keys.starving(), count, px=max(1, int(ttl_s * 1000)))
        else:
            self.r.delete(self.keys.starving())

    @_translate
    def host_workers(self, host: str) -> list[tuple[str, str, str]]:
        members = cast(set, self.r.smembers(self.keys.host_workers(host)))
        return [cast(tuple[str, str, str], tuple(m.decode().split("/", 2))) for m in members]

    @_translate
    def beating(self, workers: list[tuple[str, str, str]]) -> list[bool]:
        """Whether each (tenant, actor, worker) has a heartbeat, in one round trip."""
        with self.r.pipeline(transaction=False) as pipe:
            for tenant, actor_id, worker_id in workers:
                pipe.exists(self.keys.heartbeat(tenant, actor_id, worker_id))
            return [bool(flag) for flag in pipe.execute()]

    @_translate
    def add_host_worker(self, host: str, tenant: str, actor_id: str, wid: str) -> None:
        self.r.sadd(self.keys.host_workers(host), f"{tenant}/{actor_id}/{wid}")

    @_translate
    def drop_host_worker(self, host: str, tenant: str, actor_id: str, wid: str) -> None:
        self.r.srem(self.keys.host_workers(host), f"{tenant}/{actor_id}/{wid}")

    # -- scheduler ----------------------------------------------------------
    @_translate
    def wait_wake(self, cursor: str, timeout_s: float) -> tuple[str, set[tuple[str, str]]]:
        """Block on the wake stream after ``cursor``: the new cursor and the actors named."""
        reply = self.r.xread({self.keys.scheduler_wake(): cursor},
                             block=max(1, int(timeout_s * 1000)), count=1000)
        actors: set[tuple[str, str]] = set()
        for _stream, entries in cast(list, reply or []):
            for entry_id, fields in entries:
                cursor = entry_id.decode()
                actors.add(_split_ref(fields[b"actor"].decode()))
        return cursor, actors

    @_translate
    def wake_position(self) -> str:
        """The id of the wake stream's last entry ("0-0" when empty): a cursor from which
        every later wake-up is read, unlike "$", which sees only those added while a read
        blocks."""
        last = cast(list, self.r.xrevrange(self.keys.scheduler_wake(), count=1))
        return last[0][0].decode() if last else "0-0"

    @_translate
    def metrics_counts(self) -> dict[str, float]:
        """The platform's counters (``jobs.metrics``)."""
        raw = cast(dict, self.r.hgetall(self.keys.metrics()))
        return {name.decode(): float(value) for name, value in raw.items()}

    @_translate
    def set_watched(self, refs: Iterable[tuple[str, str]]) -> None:
        """Replace the set of actors the scheduler watches (``Keys.watched``)."""
        members = [f"{tenant}/{actor_id}" for tenant, actor_id in refs]
        with self.r.pipeline(transaction=True) as pipe:
            pipe.delete(self.keys.watched())
            if members:
                pipe.sadd(self.keys.watched(), *members)
            pipe.execute()

    @_translate
    def watched_gauges(self) -> list[tuple[str, str, int, float | None, list[str]]]:
        """For each watched actor: tenant, id, messages waiting, the oldest one's post
        time (epoch seconds) and its workers' statuses, in two round trips."""
        refs = [_split_ref(m.decode()) for m in cast(set, self.r.smembers(self.keys.watched()))]
        k = self.keys
        with self.r.pipeline(transaction=False) as pipe:
            for tenant, actor_id in refs:
                pipe.zcard(k.queued(tenant, actor_id))
                pipe.zrange(k.queued(tenant, actor_id), 0, 0, withscores=True)
                pipe.hvals(k.workers(tenant, actor_id))
            replies = pipe.execute() if refs else []
        gauges = []
        for index, (tenant, actor_id) in enumerate(refs):
            depth, oldest, workers = replies[3 * index:3 * index + 3]
            statuses = [str(json.loads(w).get("status")) for w in workers]
            gauges.append((tenant, actor_id, int(depth),
                           float(oldest[0][1]) if oldest else None, statuses))
        return gauges

    @_translate
    def wake_scheduler(self, tenant: str, actor_id: str, reason: str) -> None:
        self.r.execute_command(*self._wake_command(tenant, actor_id, reason))

    def _wake_command(self, tenant: str, actor_id: str, reason: str) -> tuple[str, ...]:
        """Name an actor on the scheduler's wake stream (kept to about 10,000 entries)."""
        return ("XADD", self.keys.scheduler_wake(), "MAXLEN", "~", "10000", "*",
                "actor", f"{tenant}/{actor_id}", "reason", reason)


def _split_ref(ref: str) -> tuple[str, str]:
    tenant, _, actor_id = ref.partition("/")
    return tenant, actor_id


def _decoded(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _newest_id(newest_first: list[Any]) -> str:
    """The id of the first entry of an XREVRANGE reply, ``0-0`` when empty."""
    return _decoded(newest_first[0][0]) if newest_first else "0-0"
