"""``/actors/search/{actors,executions,workers,logs}``: Abaco's search (``jobs.search``)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, request

from api import views
from api.envelope import envelope
from api.requests import caller, int_arg, platform
from jobs.search import DEFAULT_LIMIT, parse_query
from jobs.search_ops import search

bp = Blueprint("search", __name__)


def _view(kind: str, record: dict[str, Any]) -> dict[str, Any]:
    if kind == "actors":
        return views.actor(record)
    if kind == "executions":
        return views.execution(record)
    if kind == "workers":
        return {**views.worker(record, record.get("tenant")), "actor_id": record["actor_id"]}
    return views.logs(record)


@bp.get("/search/<search_type>")
def search_records(search_type: str) -> Response:
    query = parse_query(request.args, int_arg("skip", 0), int_arg("limit", DEFAULT_LIMIT, 1))
    result = search(platform(), caller(), search_type, query, _view)
    return envelope(result, "Search completed successfully.")
