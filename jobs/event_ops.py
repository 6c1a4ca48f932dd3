"""Links and webhooks of actors: their checks at registration, and event delivery to a
link (the service's events half; ``scheduler/deliver.py`` drives delivery)."""

from __future__ import annotations

import dataclasses
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
        owner = dataclasses.replace(caller, nonce=None, execution=None)
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
        path, current = [actor_id, link], target
        for _ in range(MOST_HOPS):
            if current["id"] == actor_id:
                raise ValidationError("link", f"would close a cycle: {' -> '.join(path)}")
            following = current.get("link")
            if not following:
                return
            path.append(following)
            try:
                current = self._resolve(caller, following)[0]
            except NotFound:
                return
        raise ValidationError("link", f"a chain of more than {MOST_HOPS} links")

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
