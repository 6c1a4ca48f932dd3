"""``/actors/{id}/state``: any JSON value, writable only on stateful actors."""

from __future__ import annotations

from flask import Blueprint, Response, request

from api.envelope import envelope
from api.requests import caller, is_json, json_body, platform

bp = Blueprint("state", __name__)


@bp.get("/<actor_id>/state")
def get_state(actor_id: str) -> Response:
    return envelope(platform().get_state(caller(), actor_id), "Actor state retrieved successfully.")


@bp.post("/<actor_id>/state")
def set_state(actor_id: str) -> Response:
    value = json_body() if is_json() else request.get_data(as_text=True)
    result = platform().set_state(caller(), actor_id, value)
    return envelope(result, "State updated successfully.")
