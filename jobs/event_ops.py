"""Links and webhooks of actors: their checks at registration, and event delivery to a
link (the service's events half; ``scheduler/deliver.py`` drives delivery)."""

from __future__ import annotations

from typing import Any

from jobs.access import AccessControl
from jobs.auth import Caller
from jobs.errors import NotFound, PermissionDenied, ValidationError
from jobs.events import EXECUTOR, allow_list, check_webhook
from jobs.settings import Settings

MOST_HOPS = 100  # a chain longer than this is refused as if it were a cycle


class EventOps(AccessControl):
    """Checks ``link`` and ``webhook``; posts events to links."""

    settings: Settings

    def _check_targets(self, caller: Caller, fields: dict[str, Any],
                       actor_id: str | None) -> None:
        """A link names an actor or alias the owner may execute, and closes no cycle; a
        webhook is an http(s) URL outside special networks (unless allowed)."""
        if fields.get("webhook"):
            check_webhook(fields["webhook"], allow_list(self.settings.webhook_allow),
                          unresolved_ok=True)
        link = fields.get("link")
        if not link:
            return
        # as delivery will check it: the owner's grants, no role
        owner = Caller(caller.user, caller.tenant, frozenset({"user"}))
        try:
            target = self._actor(owner, link, "EXECUTE", "message")
        except NotFound:
            raise NotFound(f"link: {link} names no actor or alias") from None
        except PermissionDenied as exc:
            raise PermissionDenied(f"link: {exc.message}") from None
        self._no_cycle(caller, actor_id, link, target)

    def _no_cycle(self, caller: Caller, actor_id: str | None, link: str,
                  target: dict[str, Any]) -> None:
        if actor_id is None:
            return  # a new actor: nothing links to it yet
        self._walk(caller, [actor_id, link], {actor_id}, target, {actor_id: link}, "link")

    def _alias_closes_no_cycle(self, caller: Caller, alias: str,
                               actor: dict[str, Any]) -> None:
        """Pointing ``alias`` at ``actor`` must not close a cycle of links through it."""
        self._walk(caller, [alias, actor["id"]], set(), actor, {}, "actorId",
                   {alias: actor})

    def _walk(self, caller: Caller, path: list[str], seen: set[str],
              current: dict[str, Any], links: dict[str, str], field: str,
              aliases: dict[str, dict[str, Any]] | None = None) -> None:
        """Follow links from ``current``; a revisit is a cycle (400 naming its path).
        ``links`` and ``aliases`` say what the change under check would make them."""
        for _ in range(MOST_HOPS):
            if current["id"] in seen:
                raise ValidationError(field, f"would close a cycle: {' -> '.join(path)}")
            seen.add(current["id"])
            following = links.get(current["id"], current.get("link"))
            if not following:
                return
            path.append(following)
            try:
                current = (aliases or {}).get(following) or \
                    self._resolve(caller, following)[0]
            except NotFound:
                return
        raise ValidationError(field, f"a chain of more than {MOST_HOPS} links")

    def send_event(self, actor: dict[str, Any], document: dict[str, Any]) -> str | None:
        """Post an event to ``actor``'s link as a JSON message (executor ``Abaco Event``),
        allowed only while the owner may execute the target. The execution id, if any."""
        from jobs.service import Message, new_execution

        link = actor.get("link")
        if not link:
            return None
        owner = Caller(actor["owner"], actor["tenant"], frozenset({"user"}))
        target = self._actor(owner, link, "EXECUTE", "message")
        execution = new_execution(target, EXECUTOR, Message(document, "application/json", {}))
        self.store.post_message(execution)
        return str(execution["id"])
