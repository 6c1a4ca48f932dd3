"""Every Redis key the platform uses is built here; this docstring is the schema.

All keys start with the ``prefix`` setting, then the tenant. Keys of one actor
share the hash tag ``{tenant/actor_id}`` so that the multi-key transactions on
an actor (posting a message, claiming it, finishing it) stay valid on Redis
Cluster.

| key (after ``{p}:{t}:``)           | type   | written by           | TTL            |
|------------------------------------|--------|----------------------|----------------|
| ``actors``                         | set    | api (create/delete)  | none           |
| ``actor:{tag}``                    | hash   | api, scheduler       | none           |
| ``actor:{tag}:inbox``              | stream | api (XADD), worker   | XDEL when done |
| ``actor:{tag}:queued``             | zset   | api (add), worker (claim) | none      |
| ``actor:{tag}:orphans``            | zset   | scheduler (recover), worker (adopt) | none |
| ``actor:{tag}:claimed``            | set    | worker (claim, adopt, finish), scheduler | none  |
| ``actor:{tag}:executions``         | zset   | api                  | none           |
| ``actor:{tag}:exec:{eid}``         | hash   | api, worker          | none           |
| ``actor:{tag}:exec:{eid}:logs``    | string | worker (live tail)   | deleted once in S3 |
| ``actor:{tag}:exec:{eid}:logs:grew``| stream | worker (wakes log followers) | with the logs; 1 h |
| ``actor:{tag}:exec:{eid}:binary``  | string | api (binary message) | deleted when run |
| ``actor:{tag}:exec:{eid}:results`` | list   | worker, actor (POST) | results_ttl_s after the end |
| ``actor:{tag}:state``              | string | api (JSON)           | none           |
| ``actor:{tag}:events``             | stream | worker, scheduler    | capped length  |
| ``actor:{tag}:workers``            | hash   | worker, scheduler    | none           |
| ``actor:{tag}:worker:{wid}:hb``    | string | worker heartbeat     | heartbeat_ttl  |
| ``actor:{tag}:worker:{wid}:control``| list | api (cancel, stop) | heartbeat_ttl  |
| ``actor:{tag}:placements``         | list   | Nomad placer (ids to take up) | startup grace |

| ``actor:{tag}:permissions``        | hash   | api: user -> level   | none           |
| ``actor:{tag}:nonces``             | set    | api: nonce ids       | none           |

Tenant keys (``{p}:{t}:``): ``configs`` (hash name -> JSON record; secret values in
Vault), ``config:{name}:permissions`` (hash), ``aliases`` (hash alias -> JSON record),
``alias:{name}:permissions`` (hash), ``alias:{name}:nonces`` (set),
``nonce:{nid}`` (hash of plain strings, so a Lua script can count uses).

Execution hash fields written only by ``jobs.inbox``: ``status``, ``worker_id``
(the worker holding it, JSON null when none), ``inbox_entry`` (its current stream
entry), ``handle`` (the runner's handle, once RUNNING), ``orphan`` (its worker died
after claiming it: the next worker adopts the run instead of starting one). The actor
hash carries ``fence``: the highest scheduler epoch that wrote to the actor.

Global keys (``{p}:``): ``all-actors`` (set of ``tenant/actor_id``, for the
scheduler's full pass), ``scheduler:wake`` (stream of actors needing a look),
``{scheduler}:lock`` (string ``identity epoch``, the active scheduler, with a TTL),
``{scheduler}:epoch`` (counter: each new lock holder gets the next epoch, its fencing
token), ``scheduler:starving`` (string, actors waiting for a worker at the host cap,
TTL), ``host:{host}:workers`` (set of ``tenant/actor_id/worker_id`` registered on a host,
for the per-host cap), ``runs-to-remove`` (set of run handles of deleted actors),
``logs-pending`` (set of ``tenant/actor_id/execution_id`` whose logs
are still to be copied to S3), ``metrics`` (hash of counters, ``jobs.metrics``),
``scheduler:watched`` (set of ``tenant/actor_id`` the scheduler watches: those with
messages waiting or workers, rewritten each pass, for the queue and worker gauges),
``platform`` (string, this platform's id, made once: the label of every container its
runs use, so a sweep never touches another platform's on a shared engine).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from jobs.ids import check_id

INBOX_GROUP = "workers"


@dataclass(frozen=True)
class Keys:
    """Key builder bound to one prefix (from settings)."""

    prefix: str

    def tenant_actors(self, tenant: str) -> str:
        return f"{self.prefix}:{check_id(tenant, 'tenant')}:actors"

    def all_actors(self) -> str:
        return f"{self.prefix}:all-actors"

    def platform(self) -> str:
        return f"{self.prefix}:platform"

    def scheduler_wake(self) -> str:
        return f"{self.prefix}:scheduler:wake"

    def scheduler_lock(self) -> str:
        return f"{self.prefix}:{{scheduler}}:lock"

    def scheduler_epoch(self) -> str:
        return f"{self.prefix}:{{scheduler}}:epoch"

    def host_workers(self, host: str) -> str:
        return f"{self.prefix}:host:{host}:workers"

    def metrics(self) -> str:
        return f"{self.prefix}:metrics"

    def watched(self) -> str:
        return f"{self.prefix}:scheduler:watched"

    def logs_pending(self) -> str:
        return f"{self.prefix}:logs-pending"

    def starving(self) -> str:
        """How many actors wait for a worker at the host cap (set by the scheduler, TTL)."""
        return f"{self.prefix}:scheduler:starving"

    def actor(self, tenant: str, actor_id: str) -> str:
        return _actor_key(self.prefix, tenant, actor_id)

    def inbox(self, tenant: str, actor_id: str) -> str:
        return self.actor(tenant, actor_id) + ":inbox"

    def queued(self, tenant: str, actor_id: str) -> str:
        return self.actor(tenant, actor_id) + ":queued"

    def orphans(self, tenant: str, actor_id: str) -> str:
        """Runs whose worker died, waiting to be adopted (before any new message)."""
        return self.actor(tenant, actor_id) + ":orphans"

    def claimed(self, tenant: str, actor_id: str) -> str:
        """Executions a worker holds (claimed or adopted): recovery's index of what a dead
        worker held, whether or not an inbox entry still names it."""
        return self.actor(tenant, actor_id) + ":claimed"

    def events_out(self) -> str:
        """Actor events waiting for delivery to links and webhooks (a bounded stream)."""
        return f"{self.prefix}:events-out"

    def webhooks_due(self) -> str:
        """Webhook posts to make, by when (a sorted set; bounded)."""
        return f"{self.prefix}:webhooks-due"

    def webhook_status(self, tenant: str) -> str:
        """The last delivery of each actor's webhook (a hash by actor id)."""
        return f"{self.prefix}:tenant:{check_id(tenant, 'tenant')}:webhook-status"

    def logs_expiry(self) -> str:
        """``tenant/actor/execution`` whose logs expire (logEx), by when (a sorted set)."""
        return f"{self.prefix}:logs-expiry"

    def logs_to_delete(self) -> str:
        """``tenant/actor/execution`` whose S3 objects go (deleted actors, trimmed
        records): the scheduler deletes them in the background (a set)."""
        return f"{self.prefix}:logs-to-delete"

    def runs_to_remove(self) -> str:
        """Handles of runs of deleted actors, for the scheduler to remove from the engine."""
        return f"{self.prefix}:runs-to-remove"

    def executions(self, tenant: str, actor_id: str) -> str:
        return self.actor(tenant, actor_id) + ":executions"

    def execution_totals(self, tenant: str, actor_id: str) -> str:
        """Sums over the actor's finished executions: cpu, io, runtime (a hash)."""
        return self.actor(tenant, actor_id) + ":totals"

    def execution(self, tenant: str, actor_id: str, execution_id: str) -> str:
        return self.execution_of(self.actor(tenant, actor_id),
                                 check_id(execution_id, "execution_id"))

    EXECUTION_INFIX = ":exec:"  # actor key + this + execution id (scripts join them too)

    @staticmethod
    def execution_of(actor_key: str, execution_id: str) -> str:
        """``execution`` under an actor key already made, for an id read from the actor's
        own index (checked when it was written)."""
        return f"{actor_key}{Keys.EXECUTION_INFIX}{execution_id}"

    def execution_logs(self, tenant: str, actor_id: str, execution_id: str) -> str:
        return self.execution(tenant, actor_id, execution_id) + ":logs"

    def execution_log_growth(self, tenant: str, actor_id: str, execution_id: str) -> str:
        """Entries that wake the readers following the live log (``?follow=true``)."""
        return self.execution_logs(tenant, actor_id, execution_id) + ":grew"

    def execution_binary(self, tenant: str, actor_id: str, execution_id: str) -> str:
        return self.execution(tenant, actor_id, execution_id) + ":binary"

    def execution_results(self, tenant: str, actor_id: str, execution_id: str) -> str:
        """Results not yet read, oldest first (a list; expires ``results_ttl_s`` after
        the execution ends)."""
        return self.execution(tenant, actor_id, execution_id) + ":results"

    def state(self, tenant: str, actor_id: str) -> str:
        return self.actor(tenant, actor_id) + ":state"

    def events(self, tenant: str, actor_id: str) -> str:
        return self.actor(tenant, actor_id) + ":events"

    def workers(self, tenant: str, actor_id: str) -> str:
        return self.actor(tenant, actor_id) + ":workers"

    def heartbeat(self, tenant: str, actor_id: str, worker_id: str) -> str:
        return self.actor(tenant, actor_id) + f":worker:{check_id(worker_id, 'worker_id')}:hb"

    def permissions(self, tenant: str, actor_id: str) -> str:
        return self.actor(tenant, actor_id) + ":permissions"

    def actor_nonces(self, tenant: str, actor_id: str) -> str:
        return self.actor(tenant, actor_id) + ":nonces"

    def aliases(self, tenant: str) -> str:
        return f"{self.prefix}:{check_id(tenant, 'tenant')}:aliases"

    def configs(self, tenant: str) -> str:
        return f"{self.prefix}:{check_id(tenant, 'tenant')}:configs"

    def config_permissions(self, tenant: str, name: str) -> str:
        return f"{self.prefix}:{check_id(tenant, 'tenant')}:config:{check_id(name, 'config')}" \
            ":permissions"

    def alias_permissions(self, tenant: str, alias: str) -> str:
        return f"{self.prefix}:{check_id(tenant, 'tenant')}:alias:{check_id(alias, 'alias')}" \
            ":permissions"

    def alias_nonces(self, tenant: str, alias: str) -> str:
        return f"{self.prefix}:{check_id(tenant, 'tenant')}:alias:{check_id(alias, 'alias')}" \
            ":nonces"

    def nonce(self, tenant: str, nonce_id: str) -> str:
        return f"{self.prefix}:{check_id(tenant, 'tenant')}:nonce:{check_id(nonce_id, 'nonce')}"

    def placements(self, tenant: str, actor_id: str) -> str:
        return self.actor(tenant, actor_id) + ":placements"

    def worker_control(self, tenant: str, actor_id: str, worker_id: str) -> str:
        return self.actor(tenant, actor_id) + f":worker:{check_id(worker_id, 'worker_id')}:control"


@functools.lru_cache(maxsize=8192)
def _actor_key(prefix: str, tenant: str, actor_id: str) -> str:
    """An actor's key, its ids checked once (a message's path builds it half a dozen
    times; only valid ids are remembered, a refusal raises every time)."""
    check_id(tenant, "tenant")
    check_id(actor_id, "actor_id")
    return f"{prefix}:{tenant}:actor:{{{tenant}/{actor_id}}}"
