"""How records are shown: public fields in Abaco's documented order, plus ``_links``.

The core returns plain records (with internal fields); only the API decides what a
client sees and where links point (``api_public_url``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import current_app, request

from jobs.settings import Settings

# The order fields are shown in, as Abaco's documentation lists them.
ACTOR_ORDER = ("id", "name", "image", "description", "owner", "status", "status_message",
               "stateless", "privileged", "default_environment", "use_container_uid",
               "max_workers", "min_workers", "mem_limit", "max_cpus", "max_run_time", "hints",
               "link", "webhook", "token", "log_ex", "cron_schedule", "cron_on", "cron_next_ex",
               "revision", "create_time", "last_update_time", "mounts", "last_webhook",
               "queue", "type", "uid", "gid", "tenant")
EXECUTION_ORDER = ("id", "actor_id", "executor", "worker_id", "status", "status_message",
                   "revision", "cold", "message_received_time", "start_time", "finish_time",
                   "queue_time", "runtime", "cpu", "io", "mem_peak", "exit_code", "final_state",
                   "api_server", "tenant")
WORKER_ORDER = ("id", "tenant", "status", "status_message", "image", "revision", "location", "cid",
                "host_id", "host_ip", "pid", "create_time", "last_execution_time",
                "last_health_check_time")
NONCE_FIELDS = ("level", "max_uses", "remaining_uses", "current_uses", "description", "owner",
                "create_time", "last_use_time")


@dataclass(frozen=True)
class Where:
    """Where a request's links point and how its replies are cased: the API's public
    URL, its actors' URL (``/v3/actors`` for Tapis v3 clients), and camelCase or not."""

    api_url: str
    actors_url: str
    camel: bool


def where_for(settings: Settings, path: str) -> Where:
    """The ``case`` setting says, except on the Tapis v3 routes (``/v3/...``), which are
    always snake_case as Tapis clients expect."""
    v3 = path.startswith("/v3/")
    api = settings.api_url
    return Where(api, api + ("/v3/actors" if v3 else "/actors"),
                 camel=not v3 and settings.case == "camel")


def here() -> Where:
    """This Flask request's."""
    return where_for(current_app.config["ABACO_SETTINGS"], request.path)


def api_url() -> str:
    return here().api_url


def actors_url() -> str:
    return here().actors_url


def ordered(record: dict[str, Any], order: tuple[str, ...]) -> dict[str, Any]:
    """The public fields of a record, in documentation order (internal ones left out)."""
    return {key: record.get(key) for key in order}


def actor(record: dict[str, Any], where: Where | None = None) -> dict[str, Any]:
    w = where or here()
    base = f"{w.actors_url}/{record['id']}"
    view = ordered({"queue": "default", "type": "none", **record}, ACTOR_ORDER)
    view["_links"] = {"self": base, "owner": f"{w.api_url}/profiles/{record['owner']}",
                      "executions": base + "/executions"}
    return view


def execution(record: dict[str, Any], where: Where | None = None) -> dict[str, Any]:
    """``record`` carries ``actor_owner`` (the owner link is the actor's owner)."""
    w = where or here()
    base = f"{w.actors_url}/{record['actor_id']}/executions/{record['id']}"
    view = ordered({**record, "api_server": w.api_url}, EXECUTION_ORDER)
    view["_links"] = {"self": base, "owner": f"{w.api_url}/profiles/{record['actor_owner']}",
                      "logs": base + "/logs"}
    return view


def execution_logs(logs: str, actor_id: str, execution_id: str,
                   where: Where | None = None) -> dict[str, Any]:
    """One execution's logs, and where they belong."""
    base = f"{(where or here()).actors_url}/{actor_id}/executions/{execution_id}"
    return {"logs": logs, "_links": {"self": base + "/logs", "execution": base}}


def sent(reply: dict[str, Any], actor_id: str, user: str,
         where: Where | None = None) -> dict[str, Any]:
    """The reply to a message, with its links."""
    w = where or here()
    base = f"{w.actors_url}/{actor_id}"
    return {**reply, "_links": {"self": f"{base}/executions/{reply['execution_id']}",
                                "owner": f"{w.api_url}/profiles/{user}",
                                "messages": f"{base}/messages"}}


def logs(record: dict[str, Any]) -> dict[str, Any]:
    """A logs search result: the text, and where it belongs."""
    base = f"{actors_url()}/{record['actor_id']}/executions/{record['execution_id']}"
    return {"logs": record["logs"], "execution_id": record["execution_id"],
            "actor_id": record["actor_id"],
            "_links": {"self": base + "/logs", "execution": base,
                       "owner": f"{api_url()}/profiles/{record['actor_owner']}"}}


def worker(record: dict[str, Any], tenant: str | None = None) -> dict[str, Any]:
    return ordered({"tenant": tenant, **record}, WORKER_ORDER)


def alias(record: dict[str, Any]) -> dict[str, Any]:
    base = f"{actors_url()}"
    public = {k: v for k, v in record.items() if k != "owner_admin"}
    return {**public, "_links": {"self": f"{base}/aliases/{record['alias']}",
                                 "actor": f"{base}/{record['actor_id']}"}}


def nonce(record: dict[str, Any]) -> dict[str, Any]:
    kind, _, name = record["target"].partition(":")
    roles = [r for r in str(record.get("roles") or "").split(",") if r]
    return {"id": record["id"], kind + ("_id" if kind == "actor" else ""): name,
            **{key: record.get(key) for key in NONCE_FIELDS},
            "last_use_time": record.get("last_use_time") or None, "roles": roles,
            "api_server": api_url()}
