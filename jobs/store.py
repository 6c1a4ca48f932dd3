"""The Redis store: actors, executions, the inbox, state, workers and events.

Records are Redis hashes whose values are JSON, so partial updates (one field)
are single HSETs and reads need no schema. Every multi-key change to one actor
is a MULTI/EXEC or Lua script over keys sharing the actor's hash tag.

Redis errors are turned into ``BackendUnavailable`` at this boundary.
"""

from __future__ import annotations

import contextlib
import functools
import json
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar, cast

import redis

from jobs.errors import BackendUnavailable, NotFound
from jobs.keys import INBOX_GROUP, Keys
from jobs.settings import Settings
from jobs.timeutil import now_iso

T = TypeVar("T")
EVENTS_MAXLEN = 1000

# Claim a queued message for a worker: only one claimant wins, and a purged or
# cancelled message is never started. KEYS: queued zset, execution hash.
_CLAIM = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], 'worker_id', ARGV[2], 'dispatched', 'true')
return 1
"""

# Write a final record once: a record already final (or deleted with its actor)
# is left alone, so a worker wrongly taken for dead cannot overwrite "worker lost"
# and a run finishing after its actor's deletion recreates nothing.
# KEYS: execution hash, binary payload, events stream, queued zset.
# ARGV: eid, status, event maxlen, then field/value pairs.
_FINISH = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status or status == '"COMPLETE"' or status == '"ERROR"' then return 0 end
redis.call('ZREM', KEYS[4], ARGV[1])
for i = 4, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('DEL', KEYS[2])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '*', 'event', 'EXECUTION_COMPLETE',
           'execution_id', ARGV[1], 'status', ARGV[2])
return 1
"""


# Like _FINISH, but only for a message still queued (not claimed by a worker).
_DROP = """
if redis.call('ZSCORE', KEYS[4], ARGV[1]) == false then return 0 end
""" + _FINISH


def connect(settings: Settings) -> redis.Redis:
    """One Redis client per process, bytes in and out (logs and binary messages).

    The read timeout must outlast the longest blocking read (a synchronous message
    waits up to ``sync_timeout_s``); redis-py's own default (5 s) would cut it short.
    """
    return redis.Redis.from_url(
        settings.redis_url,
        password=settings.redis_password.reveal() or None,
        socket_connect_timeout=3,
        socket_timeout=settings.sync_timeout_s + 10,
        health_check_interval=30,
    )


def _translate(func: Callable[..., T]) -> Callable[..., T]:
    """Map Redis connection failures to BackendUnavailable (HTTP 503)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return func(*args, **kwargs)
        except redis.RedisError as exc:
            raise BackendUnavailable(f"redis is unavailable: {exc}") from exc

    return wrapper


def encode(record: Mapping[str, Any]) -> dict[Any, Any]:
    return {key: json.dumps(value) for key, value in record.items()}


def decode(raw: Mapping[bytes, bytes]) -> dict[str, Any]:
    return {key.decode(): json.loads(value) for key, value in raw.items()}


class Store:
    """All reads and writes of platform records in Redis."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.r = client
        self.keys = keys
        self._claim = client.register_script(_CLAIM)
        self._finish = client.register_script(_FINISH)
        self._drop = client.register_script(_DROP)

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
        raw = self.r.hgetall(self.keys.actor(tenant, actor_id))
        if not raw:
            raise NotFound(f"actor {actor_id} not found")
        return decode(cast(dict, raw))

    @_translate
    def update_actor(self, tenant: str, actor_id: str, changes: Mapping[str, Any]) -> None:
        key = self.keys.actor(tenant, actor_id)
        if not self.r.exists(key):
            raise NotFound(f"actor {actor_id} not found")
        self.r.hset(key, mapping=encode(changes))

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
    def all_actor_refs(self) -> list[tuple[str, str]]:
        members = cast(set, self.r.smembers(self.keys.all_actors()))
        return [_split_ref(m.decode()) for m in members]

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
                  k.queued(tenant, actor_id), k.executions(tenant, actor_id),
                  k.state(tenant, actor_id), k.events(tenant, actor_id),
                  k.workers(tenant, actor_id)]
        for eid in execution_ids:
            doomed += [k.execution(tenant, actor_id, eid), k.execution_logs(tenant, actor_id, eid),
                       k.execution_binary(tenant, actor_id, eid)]
        for wid in worker_ids:
            doomed += [k.heartbeat(tenant, actor_id, wid), k.worker_control(tenant, actor_id, wid)]
        with self.r.pipeline() as pipe:
            for start in range(0, len(doomed), 500):
                pipe.delete(*doomed[start:start + 500])
            pipe.srem(k.tenant_actors(tenant), actor_id)
            pipe.srem(k.all_actors(), f"{tenant}/{actor_id}")
            pipe.execute()
        return execution_ids

    # -- messages and executions ------------------------------------------
    @_translate
    def post_message(self, execution: Mapping[str, Any], binary: bytes | None = None) -> None:
        """Record the execution and queue its message in one transaction."""
        tenant, actor_id, eid = execution["tenant"], execution["actor_id"], execution["id"]
        score = time.time()
        with self.r.pipeline() as pipe:
            pipe.hset(self.keys.execution(tenant, actor_id, eid), mapping=encode(execution))
            if binary is not None:
                pipe.set(self.keys.execution_binary(tenant, actor_id, eid), binary)
            pipe.zadd(self.keys.executions(tenant, actor_id), {eid: score})
            pipe.zadd(self.keys.queued(tenant, actor_id), {eid: score})
            pipe.xadd(self.keys.inbox(tenant, actor_id), {"eid": eid})
            pipe.execute()
        # The message is committed; if the wake-up fails, the next full pass finds it.
        with contextlib.suppress(BackendUnavailable):
            self.wake_scheduler(tenant, actor_id, "message")

    @_translate
    def requeue(self, tenant: str, actor_id: str, eid: str) -> None:
        """Put a message that no container ever started back in the inbox."""
        self.r.xadd(self.keys.inbox(tenant, actor_id), {"eid": eid})

    @_translate
    def claim(self, tenant: str, actor_id: str, eid: str, worker_id: str) -> bool:
        keys = [self.keys.queued(tenant, actor_id), self.keys.execution(tenant, actor_id, eid)]
        return bool(self._claim(keys=keys, args=[eid, json.dumps(worker_id)]))

    @_translate
    def get_execution(self, tenant: str, actor_id: str, eid: str) -> dict[str, Any]:
        raw = self.r.hgetall(self.keys.execution(tenant, actor_id, eid))
        if not raw:
            raise NotFound(f"execution {eid} of actor {actor_id} not found")
        return decode(cast(dict, raw))

    @_translate
    def update_execution(
        self, tenant: str, actor_id: str, eid: str, changes: Mapping[str, Any]
    ) -> None:
        self.r.hset(self.keys.execution(tenant, actor_id, eid), mapping=encode(changes))

    @_translate
    def list_executions(
        self, tenant: str, actor_id: str, offset: int = 0, limit: int | None = None
    ) -> tuple[int, list[dict[str, Any]]]:
        key = self.keys.executions(tenant, actor_id)
        total = int(cast(int, self.r.zcard(key)))
        end = -1 if limit is None else offset + limit - 1
        ids = [e.decode() for e in cast(list, self.r.zrange(key, offset, end))]
        with self.r.pipeline(transaction=False) as pipe:
            for eid in ids:
                pipe.hgetall(self.keys.execution(tenant, actor_id, eid))
            raws = pipe.execute()
        return total, [decode(raw) for raw in raws if raw]

    @_translate
    def queued_ids(self, tenant: str, actor_id: str) -> list[str]:
        ids = cast(list, self.r.zrange(self.keys.queued(tenant, actor_id), 0, -1))
        return [e.decode() for e in ids]

    @_translate
    def running_ids(self, tenant: str, actor_id: str, recent: int = 1000) -> list[str]:
        """Executions among the most recent that are claimed and not final."""
        _, records = self.list_executions(tenant, actor_id, offset=-recent)
        return [r["id"] for r in records if r.get("dispatched") and
                r.get("status") not in ("COMPLETE", "ERROR")]

    @_translate
    def queued_count(self, tenant: str, actor_id: str) -> int:
        return int(cast(int, self.r.zcard(self.keys.queued(tenant, actor_id))))

    @_translate
    def drop_queued(self, tenant: str, actor_id: str, eid: str, reason: str,
                    status: str = "ERROR") -> bool:
        """End a message that has not started, with ``status`` and ``reason``, atomically.

        Returns False when a worker claimed it first (or it is already final)."""
        if not self.r.zscore(self.keys.queued(tenant, actor_id), eid):
            return False
        return self.finish_execution(tenant, actor_id, eid, {
            "status": status, "status_message": reason, "finish_time": now_iso()},
            only_if_queued=True)

    @_translate
    def finish_execution(self, tenant: str, actor_id: str, eid: str,
                         record: Mapping[str, Any], only_if_queued: bool = False) -> bool:
        """Write the final record once, drop the binary payload, publish the completion.

        Returns False when the record was already final or no longer exists.
        """
        keys = [self.keys.execution(tenant, actor_id, eid),
                self.keys.execution_binary(tenant, actor_id, eid),
                self.keys.events(tenant, actor_id), self.keys.queued(tenant, actor_id)]
        fields: list[str] = []
        for key, value in encode(record).items():
            fields += [key, value]
        if only_if_queued:
            return bool(self._drop(keys=keys, args=[eid, str(record.get("status")),
                                                    EVENTS_MAXLEN, *fields]))
        return bool(self._finish(keys=keys, args=[eid, str(record.get("status")),
                                                  EVENTS_MAXLEN, *fields]))

    @_translate
    def get_binary(self, tenant: str, actor_id: str, eid: str) -> bytes | None:
        return cast(bytes | None, self.r.get(self.keys.execution_binary(tenant, actor_id, eid)))

    # -- live logs ----------------------------------------------------------
    @_translate
    def append_log(self, tenant: str, actor_id: str, eid: str, chunk: bytes) -> int:
        return int(cast(int, self.r.append(self.keys.execution_logs(tenant, actor_id, eid), chunk)))

    @_translate
    def live_log(self, tenant: str, actor_id: str, eid: str) -> bytes | None:
        return cast(bytes | None, self.r.get(self.keys.execution_logs(tenant, actor_id, eid)))

    @_translate
    def drop_live_log(self, tenant: str, actor_id: str, eid: str) -> None:
        self.r.delete(self.keys.execution_logs(tenant, actor_id, eid))

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
    @_translate
    def register_worker(self, tenant: str, actor_id: str, worker: Mapping[str, Any],
                        ttl_s: float) -> None:
        with self.r.pipeline() as pipe:
            pipe.hset(self.keys.workers(tenant, actor_id), worker["id"], json.dumps(worker))
            pipe.set(self.keys.heartbeat(tenant, actor_id, worker["id"]), "1",
                     px=int(ttl_s * 1000))
            pipe.execute()

    @_translate
    def update_worker(self, tenant: str, actor_id: str, worker_id: str,
                      changes: Mapping[str, Any]) -> None:
        key = self.keys.workers(tenant, actor_id)
        raw = self.r.hget(key, worker_id)
        if raw is None:
            return
        worker = json.loads(cast(bytes, raw))
        worker.update(changes)
        self.r.hset(key, worker_id, json.dumps(worker))

    @_translate
    def heartbeat(self, tenant: str, actor_id: str, worker_id: str, ttl_s: float) -> None:
        self.r.set(self.keys.heartbeat(tenant, actor_id, worker_id), "1", px=int(ttl_s * 1000))

    @_translate
    def workers(self, tenant: str, actor_id: str) -> list[dict[str, Any]]:
        raw = cast(dict, self.r.hgetall(self.keys.workers(tenant, actor_id)))
        return [json.loads(value) for value in raw.values()]

    @_translate
    def alive_worker_ids(self, tenant: str, actor_id: str, worker_ids: Iterable[str]) -> set[str]:
        ids = list(worker_ids)
        if not ids:
            return set()
        with self.r.pipeline(transaction=False) as pipe:
            for wid in ids:
                pipe.exists(self.keys.heartbeat(tenant, actor_id, wid))
            alive = pipe.execute()
        return {wid for wid, flag in zip(ids, alive, strict=True) if flag}

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
    def worker_standing(self, tenant: str, actor_id: str, worker_id: str) -> tuple[int | None,
                                                                                  bool]:
        """The actor's revision (None once deleted) and whether this worker is still
        registered; one round trip per worker loop."""
        with self.r.pipeline(transaction=False) as pipe:
            pipe.hget(self.keys.actor(tenant, actor_id), "revision")
            pipe.hexists(self.keys.workers(tenant, actor_id), worker_id)
            raw, registered = pipe.execute()
        return (None if raw is None else int(json.loads(raw))), bool(registered)

    @_translate
    def pending_count(self, tenant: str, actor_id: str, consumer: str) -> int:
        """Inbox entries delivered to ``consumer`` and not yet acknowledged."""
        entries = self.r.xpending_range(self.keys.inbox(tenant, actor_id), INBOX_GROUP,
                                        min="-", max="+", count=1, consumername=consumer)
        return len(cast(list, entries))

    @_translate
    def get_worker(self, tenant: str, actor_id: str, worker_id: str) -> dict[str, Any]:
        raw = self.r.hget(self.keys.workers(tenant, actor_id), worker_id)
        if raw is None:
            raise NotFound(f"worker {worker_id} of actor {actor_id} not found")
        return dict(json.loads(cast(bytes, raw)))

    @_translate
    def remove_worker(self, tenant: str, actor_id: str, worker_id: str) -> None:
        with self.r.pipeline() as pipe:
            pipe.hdel(self.keys.workers(tenant, actor_id), worker_id)
            pipe.delete(self.keys.heartbeat(tenant, actor_id, worker_id))
            pipe.delete(self.keys.worker_control(tenant, actor_id, worker_id))
            pipe.execute()

    # -- scheduler ----------------------------------------------------------
    @_translate
    def wake_scheduler(self, tenant: str, actor_id: str, reason: str) -> None:
        self.r.xadd(self.keys.scheduler_wake(),
                    {"actor": f"{tenant}/{actor_id}", "reason": reason},
                    maxlen=10000, approximate=True)


def _split_ref(ref: str) -> tuple[str, str]:
    tenant, _, actor_id = ref.partition("/")
    return tenant, actor_id


def _glob_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)
