"""What a run sees and what it leaves: the container's environment (API.md's
contract), the log sink, and the execution fields made of a run's result."""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from typing import Any

from jobs.errors import BackendUnavailable
from jobs.models import mem_bytes
from jobs.runners.base import Mount, Payload, RunResult, RunSpec, StartFailed
from jobs.settings import Settings
from jobs.status import ExecutionStatus
from jobs.store import Store
from jobs.timeutil import seconds_between
from jobs.tokens import TokenSigner

LOG = logging.getLogger("abaco.worker")


def format_value(value: Any, style: str) -> str:
    """Abaco hands JSON to actors as a Python literal unless ``json_env_format=json``."""
    if isinstance(value, str):
        return value
    return json.dumps(value) if style == "json" else repr(value)


CONFIGS_ENV = "_actor_configs"  # Abaco's name for the configs an actor's runs get


def container_env(settings: Settings, actor: dict[str, Any], execution: dict[str, Any],
                  worker_id: str, defaults: dict[str, str], state: Any,
                  token: str = "", configs: dict[str, Any] | None = None) -> dict[str, str]:
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
    if configs:
        env[CONFIGS_ENV] = json.dumps(configs)
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


def result_fields(execution: dict[str, Any], result: RunResult) -> dict[str, Any]:
    if result.gone:
        return {"status": str(ExecutionStatus.ERROR), "finish_time": result.finish_time,
                "status_message": "worker lost: " + "; ".join(result.notes)}
    notes = list(result.notes)
    if result.killed_reason:
        notes.append(result.killed_reason)
    if result.exit_code is None and not result.start_time and not result.killed_reason:
        return {"status": str(ExecutionStatus.ERROR), "finish_time": result.finish_time,
                "final_state": result.raw,
                "status_message": "the run never started: " + ("; ".join(notes) or
                                                               "no reason given")}
    fields: dict[str, Any] = {
        "status": str(ExecutionStatus.COMPLETE), "status_message": "; ".join(notes),
        "exit_code": result.exit_code, "final_state": result.raw,
        "runtime": result.runtime, "cpu": result.cpu_ns, "io": result.io_bytes,
        "mem_peak": result.mem_peak_bytes, "finish_time": result.finish_time,
    }
    if result.start_time:
        fields["start_time"] = result.start_time
        fields["queue_time"] = max(0.0, seconds_between(execution["message_received_time"],
                                                        result.start_time))
    return fields


def public_record(record: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in record.items() if key not in ("env",)}


@dataclass(frozen=True)
class StoredPayload:
    """A binary message by reference: read from Redis when the runner delivers it."""

    store: Store
    tenant: str
    actor_id: str
    execution_id: str

    def read(self) -> bytes:
        return self.store.get_binary(self.tenant, self.actor_id, self.execution_id) or b""


def run_shape(settings: Settings, actor: dict[str, Any], worker_id: str) -> RunSpec:
    """What every run of ``actor`` (its revision as the worker serves it) by this worker
    has in common, in platform units: memory in bytes, CPUs from Abaco's nano-CPUs. No
    execution yet: the shape a prewarmed container is made with."""
    max_cpus = actor.get("max_cpus")
    privileged = bool(actor.get("privileged"))
    return RunSpec(
        execution_id="", actor_id=actor["id"], tenant=actor["tenant"], worker_id=worker_id,
        image=actor["image"], env={}, network=settings.actor_network,
        max_run_time_s=float(actor.get("max_run_time") or settings.max_run_time_s),
        memory_bytes=mem_bytes(actor.get("mem_limit") or settings.actor_mem_default),
        cpus=max_cpus / 1e9 if max_cpus else settings.actor_cpus_default,
        pids_limit=settings.pids_limit, engine_access=privileged,
        user=None if actor.get("use_container_uid") else (settings.actor_user or None),
        confined=not privileged, mounts=_mounts(settings, actor.get("mounts") or []),
        queue=actor.get("queue") or "default")


def build_spec(settings: Settings, tokens: TokenSigner, actor: dict[str, Any],
               execution: dict[str, Any], worker_id: str, defaults: dict[str, str], state: Any,
               payload: Payload | None, configs: dict[str, Any] | None = None) -> RunSpec:
    """One run of ``execution``: the run's shape, its environment and its message."""
    shape = run_shape(settings, actor, worker_id)
    token = tokens.mint(actor["owner"], shape.tenant,
                        min(shape.max_run_time_s, settings.max_run_time_s), shape.actor_id,
                        execution["id"]) if actor.get("token", True) else ""
    env = container_env(settings, actor, execution, worker_id, defaults, state, token, configs)
    return dataclasses.replace(shape, execution_id=execution["id"], env=env, payload=payload)


def _mounts(settings: Settings, mounts: list[dict[str, str]]) -> tuple[Mount, ...]:
    """The actor's mounts, each still under a host path ``mount_allow`` names; the
    setting may have changed since the actor was registered."""
    chosen = []
    for mount in mounts:
        host = mount["host_path"]
        source = settings.mount_source(host)  # resolved now: a link changed since is caught
        if source is None:
            raise StartFailed(f"mount of {host} is no longer allowed by the mount_allow "
                              "setting (links resolved)", transient=False)
        chosen.append(Mount(source, mount["container_path"], mount.get("mode", "ro") != "rw"))
    return tuple(chosen)
