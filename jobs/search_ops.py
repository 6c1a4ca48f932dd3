"""Search over what the caller may read (``jobs.search`` is the query language).

Records are gathered from every actor the caller can READ, shown as the API shows
them (``view``), then filtered; a logs search first narrows the executions on their
own fields, then fetches at most ``search_max_logs`` logs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from jobs.errors import Gone, NotFound, PermissionDenied, ValidationError
from jobs.search import KINDS, Query, split_for_logs

if TYPE_CHECKING:
    from jobs.auth import Caller
    from jobs.service import Platform

View = Callable[[str, dict[str, Any]], dict[str, Any]]


def search(platform: Platform, caller: Caller, kind: str, query: Query,
           view: View) -> dict[str, Any]:
    """``view(kind, record)``: the record as the API shows it (snake_case, with links)."""
    if kind not in KINDS:
        raise ValidationError("search_type", f"{kind!r} is not one of {', '.join(KINDS)}")
    if caller.narrowed:
        raise PermissionDenied("nonces and execution tokens cannot search")
    if kind == "logs":
        return _search_logs(platform, caller, query, view)
    return query.page(view(kind, record) for record in _records(platform, caller, kind))


def _records(platform: Platform, caller: Caller, kind: str) -> Iterator[dict[str, Any]]:
    actors = platform.list_actors(caller)
    if kind == "actors":
        yield from actors
        return
    for actor in actors:
        if kind == "workers":
            for worker in platform.store.workers(caller.tenant, actor["id"]):
                yield {**worker, "actor_id": actor["id"], "tenant": caller.tenant}
            continue
        _total, records = platform.store.list_executions(caller.tenant, actor["id"])
        for record in records:
            yield {**record, "actor_owner": actor["owner"]}


def _search_logs(platform: Platform, caller: Caller, query: Query,
                 view: View) -> dict[str, Any]:
    on_record, on_logs = split_for_logs(query)
    candidates = [r for r in _records(platform, caller, "executions")
                  if on_record.matches(view("executions", r))]
    most = platform.settings.search_max_logs
    if len(candidates) > most:
        raise ValidationError("search", f"{len(candidates)} executions' logs would be read, "
                                        f"more than {most} (the search_max_logs setting): "
                                        "narrow it, e.g. with actorId= or status=")
    return on_logs.page(view("logs", {
        "logs": logs, "execution_id": r["id"], "actor_id": r["actor_id"],
        "actor_owner": r["actor_owner"]}) for r in candidates
        if (logs := _logs_or_none(platform, caller, r)) is not None)


def _logs_or_none(platform: Platform, caller: Caller, record: dict[str, Any]) -> str | None:
    """An execution's logs; None when they expired (logEx) or went meanwhile: one such
    execution leaves the search, it does not fail it."""
    try:
        return platform.get_logs(caller, record["actor_id"], record["id"])
    except (Gone, NotFound):
        return None
