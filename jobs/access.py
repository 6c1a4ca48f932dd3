"""Access control: who may do what to which actor or alias.

An actor is named by its id or by an alias; every operation asks for a level
(READ < EXECUTE < UPDATE) on what it names. Through an alias, the alias's owner
must still hold that level on the actor too. Nonces act within their target and
level only.
"""

from __future__ import annotations

from typing import Any

from jobs.auth import Caller
from jobs.errors import NotFound, PermissionDenied
from jobs.ids import check_id
from jobs.sharing import LEVELS, WORLD, SharingStore
from jobs.store import Store


class AccessControl:
    """Mixed into the service: resolves names and checks levels."""

    store: Store
    sharing: SharingStore

    def _resolve(self, caller: Caller, ref: str) -> tuple[dict[str, Any], str, str]:
        """An actor id or an alias -> (actor, target, owner of the target)."""
        check_id(ref, "actor_id")
        try:
            actor = self.store.get_actor(caller.tenant, ref)
            return actor, f"actor:{ref}", actor["owner"]
        except NotFound:
            alias = self.sharing.get_alias(caller.tenant, ref)
            if alias is None:
                raise
        try:
            actor = self.store.get_actor(caller.tenant, alias["actor_id"])
        except NotFound:
            gone = alias["actor_id"]
            raise NotFound(f"alias {ref} points to actor {gone}, which is gone") from None
        return actor, f"alias:{ref}", alias["owner"]

    def _actor(self, caller: Caller, ref: str, needed: str = "READ") -> dict[str, Any]:
        """The actor named by ``ref`` (id or alias), once the caller holds ``needed`` on it.

        Through an alias, the alias's owner must still hold ``needed`` on the actor too,
        so revoking someone's access to an actor also revokes the aliases they made.
        """
        actor, target, owner = self._resolve(caller, ref)
        if target.startswith("alias:") and not self._alias_owner_holds(caller, ref, actor,
                                                                       needed):
            raise PermissionDenied(f"the owner of alias {ref} no longer holds {needed} on "
                                   f"actor {actor['id']}")
        self._require(caller, owner, target, needed)
        return actor

    def _require(self, caller: Caller, owner: str, target: str, needed: str) -> None:
        if not self._allowed(caller, owner, target, needed):
            raise PermissionDenied(f"{needed} permission on {target.replace(':', ' ')} "
                                   f"is required for {caller.user}")

    def _allowed(self, caller: Caller, owner: str, target: str, needed: str) -> bool:
        if caller.nonce is not None:
            return caller.nonce.target == target and \
                LEVELS[caller.nonce.level] >= LEVELS[needed]
        if caller.is_admin:
            return True
        level = self._level(caller.tenant, caller.user, owner, target)
        if caller.is_limited:
            level = min(level, LEVELS["EXECUTE"])  # limited users only read and run
        return level >= LEVELS[needed]

    def _alias_owner_holds(self, caller: Caller, alias: str, actor: dict[str, Any],
                           needed: str) -> bool:
        record = self.sharing.get_alias(caller.tenant, alias) or {}
        if record.get("owner_admin"):
            return True
        level = self._level(caller.tenant, record.get("owner", ""), actor["owner"],
                            f"actor:{actor['id']}")
        return level >= LEVELS[needed]

    def _level(self, tenant: str, user: str, owner: str, target: str) -> int:
        if user == owner:
            return LEVELS["UPDATE"]
        granted = self.sharing.permissions(tenant, target)
        return max(LEVELS.get(granted.get(user, "NONE"), 0),
                   LEVELS.get(granted.get(WORLD, "NONE"), 0))

