"""Sharing: permissions, nonces and aliases of actors (the service's sharing half)."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from jobs.auth import Caller, NonceGrant
from jobs.errors import Conflict, NotFound, PermissionDenied, Unauthenticated, ValidationError
from jobs.event_ops import EventOps
from jobs.ids import check_id, new_id
from jobs.models import as_int, to_snake
from jobs.settings import Settings
from jobs.sharing import LEVELS, new_nonce
from jobs.timeutil import now_iso

RESERVED_ALIASES = frozenset({"aliases", "admin", "search", "utilization", "v2", "workers",
                              "messages", "executions", "nonces", "permissions", "state",
                              "logs", "results", "openapi.json", "metrics", "configs"})
ALIAS_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
USER_NAME = re.compile(r"^[A-Za-z0-9_.@+\-]{1,128}$")


class SharingOps(EventOps):
    """Permissions, nonces and aliases."""

    settings: Settings

    # -- permissions -----------------------------------------------------------------
    def _target(self, caller: Caller, ref: str, needed: str,
                alias_only: bool = False) -> tuple[str, str]:
        """A target for permission and nonce operations, which a nonce may never perform."""
        if caller.nonce is not None and needed != "READ":
            raise PermissionDenied("a nonce cannot manage permissions or nonces")
        if caller.execution is not None:
            raise PermissionDenied("an execution token cannot see or manage permissions, "
                                   "nonces or aliases")
        actor, target, owner = self._resolve(caller, ref)
        if alias_only and not target.startswith("alias:"):
            raise NotFound(f"alias {ref} not found")
        self._require(caller, owner, target, needed)
        if target.startswith("alias:"):  # Abaco's rule: the level on the actor as well
            self._require(dataclasses.replace(caller, nonce=None), actor["owner"],
                          f"actor:{actor['id']}", needed)
        return target, owner

    def get_permissions(self, caller: Caller, ref: str,
                        alias_only: bool = False) -> dict[str, str]:
        target, owner = self._target(caller, ref, "READ", alias_only)
        return {**self.sharing.permissions(caller.tenant, target), owner: "UPDATE"}

    def set_permission(self, caller: Caller, ref: str, body: dict[str, Any],
                       alias_only: bool = False) -> dict[str, str]:
        target, owner = self._target(caller, ref, "UPDATE", alias_only)
        _only_fields(body, {"user", "level"})
        user, level = body.get("user"), str(body.get("level", "")).upper()
        if not isinstance(user, str) or not user.strip():
            raise ValidationError("user", "is required")
        if not USER_NAME.fullmatch(user):
            raise ValidationError("user", "must be 1 to 128 letters, digits or _ . @ + -")
        if level not in LEVELS:
            raise ValidationError("level", f"must be one of {', '.join(LEVELS)}")
        if user == owner:
            raise ValidationError("user", "the owner always has UPDATE")
        self.sharing.set_permission(caller.tenant, target, user.strip(), level)
        return self.get_permissions(caller, ref, alias_only)

    # -- nonces ----------------------------------------------------------------------
    def create_nonce(self, caller: Caller, ref: str, body: dict[str, Any],
                     alias_only: bool = False) -> dict[str, Any]:
        if caller.narrowed:
            raise PermissionDenied("nonces and execution tokens cannot create nonces")
        target, _owner = self._target(caller, ref, "UPDATE", alias_only)
        _only_fields(body, {"level", "max_uses", "description"})
        level = str(body.get("level", "EXECUTE")).upper()
        if level not in ("READ", "EXECUTE", "UPDATE"):
            raise ValidationError("level", "must be READ, EXECUTE or UPDATE")
        max_uses = as_int("max_uses", body.get("maxUses", body.get("max_uses", -1)), minimum=-1)
        if max_uses == 0:
            raise ValidationError("maxUses", "must be -1 (unlimited) or positive")
        description = body.get("description", "")
        if not isinstance(description, str) or len(description) > 4096 or "\x00" in description:
            raise ValidationError("description", "must be a string of at most 4096 characters "
                                                 "without NUL")
        nonce = new_nonce(f"{caller.tenant}_{new_id()}", target, level, max_uses, description,
                          caller.user, caller.roles)
        self.sharing.create_nonce(caller.tenant, nonce)
        return self.sharing.get_nonce(caller.tenant, nonce["id"])

    def list_nonces(self, caller: Caller, ref: str,
                    alias_only: bool = False) -> list[dict[str, Any]]:
        target, owner = self._target(caller, ref, "UPDATE", alias_only)
        nonces = [self.sharing.get_nonce(caller.tenant, nid)
                  for nid in self.sharing.nonce_ids(caller.tenant, target)]
        return [n for n in nonces
                if caller.is_admin or caller.user in (owner, n["owner"])]

    def get_nonce(self, caller: Caller, ref: str, nonce_id: str,
                  alias_only: bool = False) -> dict[str, Any]:
        return self._nonce(caller, ref, nonce_id, alias_only)

    def delete_nonce(self, caller: Caller, ref: str, nonce_id: str,
                     alias_only: bool = False) -> None:
        nonce = self._nonce(caller, ref, nonce_id, alias_only)
        self.sharing.delete_nonce(caller.tenant, nonce_id, nonce["target"])

    def _nonce(self, caller: Caller, ref: str, nonce_id: str,
               alias_only: bool) -> dict[str, Any]:
        target, owner = self._target(caller, ref, "UPDATE", alias_only)
        nonce = self.sharing.get_nonce(caller.tenant, check_id(nonce_id, "nonce_id"))
        visible = caller.is_admin or caller.user in (owner, nonce["owner"])
        if nonce["target"] != target or not visible:
            raise NotFound(f"nonce {nonce_id} not found on {ref}")
        return nonce

    def redeem_nonce(self, nonce_id: str) -> Caller:
        """Count one use atomically and act as the nonce's owner, within its target and level,
    with the grants the owner holds now and no role."""
        tenant = nonce_id.rpartition("_")[0]  # ids never contain "_"; tenants may
        check_id(nonce_id, "x-nonce")
        outcome = self.sharing.redeem(tenant, nonce_id) if tenant else 0
        if outcome == 0:
            raise Unauthenticated("unknown or deleted nonce")
        if outcome < 0:
            raise Unauthenticated("nonce has no uses left")
        nonce = self.sharing.get_nonce(tenant, nonce_id)
        # No role rides in a nonce: its creator's grants are checked at each use.
        return Caller(user=nonce["owner"], tenant=tenant, roles=frozenset({"user"}),
                      nonce=NonceGrant(nonce_id, nonce["target"], nonce["level"]))

    # -- aliases -----------------------------------------------------------------------
    def create_alias(self, caller: Caller, body: dict[str, Any]) -> dict[str, Any]:
        if caller.narrowed:
            raise PermissionDenied("nonces and execution tokens cannot create aliases")
        _only_fields(body, {"alias", "actor_id"})
        name = _alias_name(body.get("alias"))
        if self.store.actor_exists(caller.tenant, name):
            raise Conflict(f"alias {name} would hide the actor with that id")
        actor = self._actor(caller, _required_str(body, "actorId", "actor_id"), "UPDATE",
                            "manage")
        record = {"alias": name, "actor_id": actor["id"], "owner": caller.user,
                  "create_time": now_iso()}
        if not self.sharing.put_alias(caller.tenant, record, create=True):
            raise Conflict(f"alias {name} already exists")
        return record

    def list_aliases(self, caller: Caller) -> list[dict[str, Any]]:
        if caller.execution is not None:
            raise PermissionDenied("an execution token may not list aliases")
        return [a for a in self.sharing.list_aliases(caller.tenant)
                if self._allowed(caller, a["owner"], f"alias:{a['alias']}", "READ")]

    def get_alias(self, caller: Caller, name: str) -> dict[str, Any]:
        self._target(caller, name, "READ", alias_only=True)
        return self._alias_record(caller, name)

    def update_alias(self, caller: Caller, name: str, body: dict[str, Any]) -> dict[str, Any]:
        self._target(caller, name, "UPDATE", alias_only=True)
        _only_fields(body, {"alias", "actor_id"})
        actor = self._actor(caller, _required_str(body, "actorId", "actor_id"), "UPDATE",
                            "manage")
        self._alias_closes_no_cycle(caller, name, actor)
        record = {**self._alias_record(caller, name), "actor_id": actor["id"]}
        self.sharing.put_alias(caller.tenant, record, create=False)
        return record

    def delete_alias(self, caller: Caller, name: str) -> None:
        self._target(caller, name, "UPDATE", alias_only=True)
        self.sharing.delete_alias(caller.tenant, name)

    def _alias_record(self, caller: Caller, name: str) -> dict[str, Any]:
        record = self.sharing.get_alias(caller.tenant, name)
        if record is None:
            raise NotFound(f"alias {name} not found")
        return record


def _only_fields(body: dict[str, Any], known: set[str]) -> None:
    """A field the operation does not take is refused, not silently dropped."""
    for name in body:
        if to_snake(name) not in known:
            raise ValidationError(name, "is not a field of this request")


def _alias_name(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValidationError("alias", "is required")
    if not ALIAS_NAME.fullmatch(value):
        bad = sorted({ch for ch in value if not re.match(r"[A-Za-z0-9_.\-]", ch)})
        detail = f"forbidden characters {''.join(bad)!r}" if bad else \
            "1 to 64 characters, the first a letter or digit"
        raise ValidationError("alias", f"{value!r} has {detail}")
    if value in RESERVED_ALIASES:  # route names, which are case-sensitive
        raise ValidationError("alias", f"{value!r} is a reserved word")
    return value


def _required_str(body: dict[str, Any], *names: str) -> str:
    for name in names:
        if isinstance(body.get(name), str) and body[name]:
            return str(body[name])
    raise ValidationError(names[0], "is required")
