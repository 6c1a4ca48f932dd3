"""Sharing records in Redis: permissions, aliases and nonces.

Permissions are a hash user -> level per actor or alias. Aliases are one hash per
tenant. A nonce is a hash of plain strings so that ``redeem`` can count a use
atomically in Lua: of 20 parallel redemptions of a 10-use nonce, exactly 10 win.
"""

from __future__ import annotations

import json
from typing import Any, cast

from jobs.errors import NotFound
from jobs.store import Store, _translate
from jobs.timeutil import now_iso

LEVELS = {"NONE": 0, "READ": 1, "EXECUTE": 2, "UPDATE": 3}
WORLD = "ABACO_WORLD"

# KEYS: nonce hash. Returns 1 (counted), 0 (unknown), -1 (no uses left).
_REDEEM = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local remaining = tonumber(redis.call('HGET', KEYS[1], 'remaining_uses'))
if remaining == 0 then return -1 end
if remaining > 0 then redis.call('HINCRBY', KEYS[1], 'remaining_uses', -1) end
redis.call('HINCRBY', KEYS[1], 'current_uses', 1)
redis.call('HSET', KEYS[1], 'last_use_time', ARGV[1])
return 1
"""


class SharingStore:
    """Permissions, aliases and nonces of one platform."""

    def __init__(self, store: Store) -> None:
        self.r = store.r
        self.keys = store.keys
        self._redeem = store.r.register_script(_REDEEM)

    # -- permissions --------------------------------------------------------------
    def _permission_key(self, tenant: str, target: str) -> str:
        kind, _, name = target.partition(":")
        if kind == "alias":
            return self.keys.alias_permissions(tenant, name)
        if kind == "config":
            return self.keys.config_permissions(tenant, name)
        return self.keys.permissions(tenant, name)

    @_translate
    def permissions(self, tenant: str, target: str) -> dict[str, str]:
        raw = cast(dict, self.r.hgetall(self._permission_key(tenant, target)))
        return {k.decode(): v.decode() for k, v in raw.items()}

    @_translate
    def set_permission(self, tenant: str, target: str, user: str, level: str) -> None:
        key = self._permission_key(tenant, target)
        if level == "NONE":
            self.r.hdel(key, user)
        else:
            self.r.hset(key, user, level)

    @_translate
    def drop_permissions(self, tenant: str, target: str) -> None:
        self.r.delete(self._permission_key(tenant, target))

    # -- aliases ------------------------------------------------------------------
    @_translate
    def get_alias(self, tenant: str, alias: str) -> dict[str, Any] | None:
        raw = self.r.hget(self.keys.aliases(tenant), alias)
        return None if raw is None else dict(json.loads(cast(bytes, raw)))

    @_translate
    def list_aliases(self, tenant: str) -> list[dict[str, Any]]:
        raw = cast(dict, self.r.hgetall(self.keys.aliases(tenant)))
        return sorted((json.loads(v) for v in raw.values()), key=lambda a: a["alias"])

    @_translate
    def put_alias(self, tenant: str, record: dict[str, Any], create: bool) -> bool:
        """Store an alias; with ``create`` only if the name is free (HSETNX)."""
        key, name, value = self.keys.aliases(tenant), record["alias"], json.dumps(record)
        if create:
            return bool(self.r.hsetnx(key, name, value))
        self.r.hset(key, name, value)
        return True

    @_translate
    def delete_alias(self, tenant: str, alias: str) -> None:
        for nonce_id in self.nonce_ids(tenant, f"alias:{alias}"):
            self.r.delete(self.keys.nonce(tenant, nonce_id))
        with self.r.pipeline() as pipe:
            pipe.hdel(self.keys.aliases(tenant), alias)
            pipe.delete(self.keys.alias_permissions(tenant, alias),
                        self.keys.alias_nonces(tenant, alias))
            pipe.execute()

    # -- nonces -------------------------------------------------------------------
    def _nonce_index(self, tenant: str, target: str) -> str:
        kind, _, name = target.partition(":")
        if kind == "alias":
            return self.keys.alias_nonces(tenant, name)
        return self.keys.actor_nonces(tenant, name)

    @_translate
    def create_nonce(self, tenant: str, nonce: dict[str, Any]) -> None:
        record: dict[Any, Any] = {key: str(value) for key, value in nonce.items()}
        with self.r.pipeline() as pipe:
            pipe.hset(self.keys.nonce(tenant, nonce["id"]), mapping=record)
            pipe.sadd(self._nonce_index(tenant, nonce["target"]), nonce["id"])
            pipe.execute()

    @_translate
    def nonce_ids(self, tenant: str, target: str) -> list[str]:
        return sorted(m.decode() for m in cast(set, self.r.smembers(
            self._nonce_index(tenant, target))))

    @_translate
    def get_nonce(self, tenant: str, nonce_id: str) -> dict[str, Any]:
        raw = cast(dict, self.r.hgetall(self.keys.nonce(tenant, nonce_id)))
        if not raw:
            raise NotFound(f"nonce {nonce_id} not found")
        record: dict[str, Any] = {k.decode(): v.decode() for k, v in raw.items()}
        for name in ("max_uses", "remaining_uses", "current_uses"):
            record[name] = int(record[name])
        return record

    @_translate
    def delete_nonce(self, tenant: str, nonce_id: str, target: str) -> None:
        with self.r.pipeline() as pipe:
            pipe.delete(self.keys.nonce(tenant, nonce_id))
            pipe.srem(self._nonce_index(tenant, target), nonce_id)
            pipe.execute()

    @_translate
    def redeem(self, tenant: str, nonce_id: str) -> int:
        return int(self._redeem(keys=[self.keys.nonce(tenant, nonce_id)], args=[now_iso()]))

    @_translate
    def drop_target(self, tenant: str, target: str) -> None:
        """Remove the permissions and nonces of a deleted actor or alias."""
        for nonce_id in self.nonce_ids(tenant, target):
            self.r.delete(self.keys.nonce(tenant, nonce_id))
        self.r.delete(self._nonce_index(tenant, target), self._permission_key(tenant, target))


def new_nonce(nonce_id: str, target: str, level: str, max_uses: int, description: str,
              owner: str, roles: frozenset[str]) -> dict[str, Any]:
    return {"id": nonce_id, "target": target, "level": level, "max_uses": max_uses,
            "remaining_uses": max_uses, "current_uses": 0, "description": description,
            "owner": owner, "roles": ",".join(sorted(roles)), "create_time": now_iso(),
            "last_use_time": ""}
