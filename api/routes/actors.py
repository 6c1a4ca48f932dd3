"""``/actors`` and ``/actors/{id}``."""

from __future__ import annotations

from flask import Blueprint, Response, request

from api import views
from api.envelope import envelope
from api.requests import caller, int_arg, object_body, platform

bp = Blueprint("actors", __name__)
RETRIEVED = "Actor retrieved successfully."


@bp.get("")
@bp.get("/")
def list_actors() -> Response:
    """Every readable actor, as Abaco answers by default; ``offset`` and ``limit`` page it
    (ordered by creation time, then id)."""
    actors = sorted(platform().list_actors(caller()),
                    key=lambda a: (a.get("create_time") or "", a["id"]))
    offset = int_arg("offset", 0)
    limit = int_arg("limit", len(actors), 1) if "limit" in request.args else len(actors)
    return envelope([views.actor(a) for a in actors[offset:offset + limit]],
                    "Actors retrieved successfully.")


@bp.post("")
@bp.post("/")
def create_actor() -> Response:
    actor = platform().create_actor(caller(), object_body())
    return envelope(views.actor(actor), "Actor created successfully.")


@bp.get("/<actor_id>")
def get_actor(actor_id: str) -> Response:
    return envelope(views.actor(platform().get_actor(caller(), actor_id)), RETRIEVED)


@bp.put("/<actor_id>")
def update_actor(actor_id: str) -> Response:
    actor = platform().update_actor(caller(), actor_id, object_body())
    return envelope(views.actor(actor), "Actor updated successfully.")


@bp.delete("/<actor_id>")
def delete_actor(actor_id: str) -> Response:
    platform().delete_actor(caller(), actor_id)
    return envelope(None, "Actor deleted successfully.")
