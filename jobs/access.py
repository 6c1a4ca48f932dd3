"""Access control: who may do what to which actor or alias.

An actor is named by its id or by an alias; every operation asks for a level
(READ < EXECUTE < UPDATE) on what it names. Through an alias the caller needs
that level on the alias and on the actor. Nonces act within their target and
level only; execution tokens within the actions below.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from jobs.auth import Caller
from jobs.errors import NotFound, PermissionDenied
from jobs.ids import check_id
from jobs.sharing import LEVELS, WORLD, SharingStore
from jobs.store import Store

# What operations do, as far as an execution token is concerned.
ACTIONS = {"read": "read", "state": "read or set the state of",
           "executions": "list the executions of", "execution": "read an execution of",
           "message": "send messages to", "manage": "change, share or delete",
           "workers": "see the workers of"}
OWN_ACTIONS = frozenset({"read", "state", "executions", "execution", "message"})
ELSEWHERE_ACTIONS = frozenset({"message", "execution"})  # execution: those it sent


class AccessControl:
    """Mixed into the service: resolves names and checks levels."""

    store: Store
    sharing: SharingStore

    def _resolve(self, caller: Caller, ref: str,
                 known: dict[str, Any] | None = None) -> tuple[dict[str, Any], str, str]:
        """An actor id or an alias -> (actor, target, owner of the target). ``known``:
        the actor record by that id, read already."""
        check_id(ref, "actor_id")
        try:
            actor = known if known is not None else self.store.get_actor(caller.tenant, ref)
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

    def _actor(self, caller: Caller, ref: str, needed: str = "READ",
               action: str = "read", known: dict[str, Any] | None = None) -> dict[str, Any]:
        """The actor named by ``ref`` (id or alias), once the caller holds ``needed`` on
        it and, for an execution token, ``action`` is within its scope.

        Through an alias the caller needs ``needed`` on the alias and on the actor
        (Abaco's rule), so a grant on an alias alone opens nothing.
        """
        actor, target, owner = self._resolve(caller, ref, known)
        self._within_scope(caller, actor, action)
        self._require(caller, owner, target, needed)
        if target.startswith("alias:"):
            self._require(dataclasses.replace(caller, nonce=None), actor["owner"],
                          f"actor:{actor['id']}", needed)
        return actor

    @staticmethod
    def _within_scope(caller: Caller, actor: dict[str, Any], action: str) -> None:
        grant = caller.execution
        if grant is None:
            return
        own = actor["id"] == grant.actor_id
        if action not in (OWN_ACTIONS if own else ELSEWHERE_ACTIONS):
            raise PermissionDenied(
                f"an execution token may not {ACTIONS[action]} "
                f"{'its own actor' if own else 'actor ' + actor['id']}: it may read its own "
                "actor, its state and executions, and send messages to actors its owner "
                "may execute")

    @staticmethod
    def _sent_by_caller(caller: Caller, record: dict[str, Any]) -> None:
        """An execution token reads executions of other actors only if it sent them."""
        grant = caller.execution
        if grant is not None and record["actor_id"] != grant.actor_id and \
                record.get("origin_execution") != grant.execution_id:
            raise PermissionDenied(f"execution {record['id']} was not sent by execution "
                                   f"{grant.execution_id}")

    def _require(self, caller: Caller, owner: str, target: str, needed: str) -> None:
        if not self._allowed(caller, owner, target, needed):
            raise PermissionDenied(f"{needed} permission on {target.replace(':', ' ')} "
                                   f"is required for {caller.user}")

    def _allowed(self, caller: Caller, owner: str, target: str, needed: str) -> bool:
        if caller.nonce is not None:  # within its target and level, while its creator
            return caller.nonce.target == target and \
                LEVELS[caller.nonce.level] >= LEVELS[needed] and \
                self._level(caller.tenant, caller.user, owner, target) >= LEVELS[needed]
        if caller.is_admin:
            return True
        level = self._level(caller.tenant, caller.user, owner, target)
        if caller.is_limited and caller.user != owner:
            level = min(level, LEVELS["EXECUTE"])  # others' actors: limited users read and run
        return level >= LEVELS[needed]

    def _level(self, tenant: str, user: str, owner: str, target: str) -> int:
        if user == owner:
            return LEVELS["UPDATE"]
        granted = self.sharing.permissions(tenant, target)
        return max(LEVELS.get(granted.get(user, "NONE"), 0),
                   LEVELS.get(granted.get(WORLD, "NONE"), 0))

