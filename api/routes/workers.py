"""``/actors/{id}/workers``: list, inspect, add (admins), stop gracefully."""

from __future__ import annotations

from flask import Blueprint, Response

from api import views
from api.envelope import envelope
from api.requests import caller, object_body, platform

bp = Blueprint("workers", __name__)


@bp.get("/<actor_id>/workers")
def list_workers(actor_id: str) -> Response:
    workers = platform().list_workers(caller(), actor_id)
    return envelope([views.worker(w, caller().tenant) for w in workers],
                    "Workers retrieved successfully.")


@bp.post("/<actor_id>/workers")
def add_workers(actor_id: str) -> Response:
    body = object_body()
    result = platform().request_workers(caller(), actor_id, body.get("num", 1))
    return envelope(result, "Workers requested.")


@bp.get("/<actor_id>/workers/<worker_id>")
def get_worker(actor_id: str, worker_id: str) -> Response:
    result = platform().get_worker(caller(), actor_id, worker_id)
    return envelope(views.worker(result, caller().tenant), "Worker retrieved successfully.")


@bp.delete("/<actor_id>/workers/<worker_id>")
def stop_worker(actor_id: str, worker_id: str) -> Response:
    platform().stop_worker(caller(), actor_id, worker_id)
    return envelope(None, "Worker is shutting down; its current execution finishes first.")
