"""Actor configs: named values shared by a list of actors (or aliases), injected into
their executions as ``_actor_configs`` (a JSON object, name -> value), as Abaco does.

- ``is_secret`` values live in Vault (``abaco/{tenant}/configs/{name}``) and are never
  shown: replies carry ``value: null`` for them.
- The creator holds UPDATE; others need READ to see a config and UPDATE to change,
  delete or share it (permissions as on actors). Lists show what the caller can read.
- Naming an actor or alias needs UPDATE on it: a config changes what an actor's runs
  see, which is the actor's owner's decision.
- Limited users, nonces and execution tokens cannot create or change configs.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any, cast

from jobs.access import AccessControl
from jobs.errors import Conflict, NotFound, PermissionDenied, ValidationError
from jobs.models import as_bool, normalize_keys
from jobs.secrets import SecretStore
from jobs.sharing import WORLD, SharingStore
from jobs.store import Store
from jobs.timeutil import now_iso

if TYPE_CHECKING:
    from jobs.auth import Caller

CONFIG_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
RESERVED = frozenset({"executions", "nonces", "logs", "messages", "adapters", "admin",
                      "utilization", "permissions", "search", "aliases", "configs"})
FIELDS = {"name", "value", "is_secret", "actors"}
MAX_VALUE = 64 * 1024


def _target(name: str) -> str:
    return f"config:{name}"


class ConfigOps(AccessControl):
    """Mixed into the service (``Platform``)."""

    secrets: SecretStore

    def create_config(self, caller: Caller, body: dict[str, Any]) -> dict[str, Any]:
        _may_write(caller)
        fields = _fields(body, required=True)
        name = fields["name"]
        if self._config_record(caller.tenant, name) is not None:
            raise Conflict(f"config {name} already exists")
        bound = self._check_actors(caller, fields["actors"])
        now = now_iso()
        record = {"name": name, "is_secret": fields["is_secret"], "actors": fields["actors"],
                  "bound": bound, "owner": caller.user, "owner_admin": caller.is_admin,
                  "create_time": now, "last_update_time": now}
        self._store_config(caller.tenant, record, fields["value"])
        return self._shown(record, fields["value"])

    def list_configs(self, caller: Caller) -> list[dict[str, Any]]:
        if caller.narrowed:
            raise PermissionDenied("nonces and execution tokens cannot list configs")
        raw = cast(dict, self.store.r.hgetall(self.store.keys.configs(caller.tenant)))
        records = [json.loads(v) for v in raw.values()]
        return [self._shown(r, r.get("value")) for r in sorted(records, key=lambda r: r["name"])
                if self._allowed(caller, r["owner"], _target(r["name"]), "READ")
                or self._owns_a_bound_actor(caller, r)]

    def _owns_a_bound_actor(self, caller: Caller, record: dict[str, Any]) -> bool:
        """An actor's owner sees the configs its runs get, whoever made them."""
        for actor_id in record.get("bound", []):
            try:
                if self.store.get_actor(caller.tenant, actor_id)["owner"] == caller.user:
                    return True
            except NotFound:
                continue
        return False

    def get_config(self, caller: Caller, name: str) -> dict[str, Any]:
        record = self._config(caller, name, "READ")
        return self._shown(record, record.get("value"))

    def update_config(self, caller: Caller, name: str,
                      body: dict[str, Any]) -> dict[str, Any]:
        _may_write(caller)
        record = self._config(caller, name, "UPDATE")
        fields = _fields({"name": name, **body}, required=False)
        if fields["name"] != name:
            raise ValidationError("name", "a config keeps its name (delete and create anew)")
        if "actors" in fields:
            record["bound"] = self._check_actors(caller, fields["actors"])
        secret = fields.get("is_secret", record["is_secret"])
        if record["is_secret"] and not secret and "value" not in fields:
            raise ValidationError("value", "making a secret config plain needs a new value (the "
                                           "secret one is never shown)")
        value = fields["value"] if "value" in fields else self._config_value(
            caller.tenant, record)
        record.update({k: v for k, v in fields.items() if k in ("actors", "is_secret")},
                      last_update_time=now_iso())
        if record["is_secret"] and not secret:
            self.secrets.delete_at(self.secrets.config_path(caller.tenant, name))
        record["is_secret"] = secret
        self._store_config(caller.tenant, record, value)
        return self._shown(record, value)

    def delete_config(self, caller: Caller, name: str) -> None:
        _may_write(caller)
        record = self._config(caller, name, "UPDATE")
        if record["is_secret"]:
            self.secrets.delete_at(self.secrets.config_path(caller.tenant, name))
        self.store.r.delete(self.store.keys.config_permissions(caller.tenant, name))
        self.store.r.hdel(self.store.keys.configs(caller.tenant), name)

    def config_permissions(self, caller: Caller, name: str) -> dict[str, str]:
        record = self._config(caller, name, "READ")
        return {record["owner"]: "UPDATE", **self.sharing.permissions(caller.tenant,
                                                                      _target(name))}

    def set_config_permission(self, caller: Caller, name: str,
                              body: dict[str, Any]) -> dict[str, str]:
        _may_write(caller)
        self._config(caller, name, "UPDATE")
        user, level = body.get("user"), str(body.get("level", "")).upper()
        if not isinstance(user, str) or not user.strip():
            raise ValidationError("user", "is required")
        if level not in ("NONE", "READ", "EXECUTE", "UPDATE"):
            raise ValidationError("level", "must be NONE, READ, EXECUTE or UPDATE")
        self.sharing.set_permission(caller.tenant, _target(name), user.strip(), level)
        return self.config_permissions(caller, name)

    # -- plumbing ----------------------------------------------------------------------
    def _config(self, caller: Caller, name: str, needed: str) -> dict[str, Any]:
        record = self._config_record(caller.tenant, name)
        if record is None or not self._allowed(caller, record["owner"], _target(name), "READ"):
            raise NotFound(f"config {name} not found")
        self._require(caller, record["owner"], _target(name), needed)
        return record

    def _config_record(self, tenant: str, name: str) -> dict[str, Any] | None:
        _name(name)
        raw = self.store.r.hget(self.store.keys.configs(tenant), name)
        return None if raw is None else dict(json.loads(cast(bytes, raw)))

    def _config_value(self, tenant: str, record: dict[str, Any]) -> Any:
        return config_value(self.secrets, tenant, record)

    def _store_config(self, tenant: str, record: dict[str, Any], value: Any) -> None:
        kept = dict(record)
        if record["is_secret"]:
            self.secrets.put_at(self.secrets.config_path(tenant, record["name"]),
                                {"value": json.dumps(value)})
            kept.pop("value", None)
        else:
            kept["value"] = value
        self.store.r.hset(self.store.keys.configs(tenant), record["name"], json.dumps(kept))

    def _check_actors(self, caller: Caller, refs: list[str]) -> list[str]:
        """The actors named (aliases resolved now: a config is bound to the actor an alias
        pointed to when it was named, never to whatever takes the name later)."""
        return list(dict.fromkeys(self._actor(caller, ref, "UPDATE", "manage")["id"]
                                  for ref in refs))

    def _shown(self, record: dict[str, Any], value: Any) -> dict[str, Any]:
        return {"name": record["name"], "value": None if record["is_secret"] else value,
                "is_secret": record["is_secret"], "actors": ",".join(record["actors"]),
                "owner": record["owner"], "create_time": record["create_time"],
                "last_update_time": record["last_update_time"]}


def configs_for(store: Store, secrets: SecretStore, actor: dict[str, Any]) -> dict[str, Any]:
    """The values of the configs bound to this actor whose author may still change the
    actor (UPDATE now: a revoked grant stops the config, as it stops nonces)."""
    tenant = actor["tenant"]
    raw = cast(dict, store.r.hgetall(store.keys.configs(tenant)))
    if not raw:
        return {}
    grants = SharingStore(store).permissions(tenant, f"actor:{actor['id']}")
    chosen = {}
    for item in raw.values():
        record = json.loads(item)
        if actor["id"] in record.get("bound", []) and _may_still(record, actor, grants):
            chosen[record["name"]] = config_value(secrets, tenant, record)
    return chosen


def _may_still(record: dict[str, Any], actor: dict[str, Any], grants: dict[str, str]) -> bool:
    if record["owner"] == actor["owner"] or record.get("owner_admin"):
        return True
    return "UPDATE" in (grants.get(record["owner"]), grants.get(WORLD))


def config_value(secrets: SecretStore, tenant: str, record: dict[str, Any]) -> Any:
    if not record["is_secret"]:
        return record.get("value")
    stored = secrets.get_at(secrets.config_path(tenant, record["name"]))
    return json.loads(stored["value"]) if "value" in stored else None


def _may_write(caller: Caller) -> None:
    if caller.is_limited or caller.narrowed:
        raise PermissionDenied("limited users, nonces and execution tokens cannot create or "
                               "change actor configs")


def _name(value: Any) -> str:
    if not isinstance(value, str) or not CONFIG_NAME.fullmatch(value):
        raise ValidationError("name", f"{str(value)[:64]!r} is not a config name (letters, "
                                      "digits, _ . -; at most 64)")
    if value in RESERVED:
        raise ValidationError("name", f"{value!r} is a reserved word")
    return value


def _fields(body: dict[str, Any], required: bool) -> dict[str, Any]:
    data = normalize_keys(body)
    unknown = sorted(set(data) - FIELDS)
    if unknown:
        raise ValidationError(unknown[0], "is not a config field")
    fields: dict[str, Any] = {"name": _name(data.get("name"))}
    for key in ("value", "actors", "is_secret"):
        if key not in data and required and key != "is_secret":
            raise ValidationError(key, "is required")
    if "value" in data:
        if len(json.dumps(data["value"])) > MAX_VALUE:
            raise ValidationError("value", f"must be at most {MAX_VALUE} bytes as JSON")
        fields["value"] = data["value"]
    if "actors" in data or required:
        fields["actors"] = _actor_refs(data.get("actors"))
    if "is_secret" in data or required:
        fields["is_secret"] = as_bool("is_secret", data.get("is_secret", False))
    return fields


def _actor_refs(value: Any) -> list[str]:
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list) or not value or len(value) > 256 or \
            not all(isinstance(v, str) and v for v in value):
        raise ValidationError("actors", "must name at least one actor id or alias (a list, or "
                                        "a comma-separated string)")
    return list(dict.fromkeys(value))
