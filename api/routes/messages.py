"""``/actors/{id}/messages``: send, count, purge; optionally wait (synchronous)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, request

from api import views
from api.envelope import envelope, error
from api.requests import caller, is_json, json_body, platform
from jobs.errors import Timeout, ValidationError
from jobs.models import no_nul
from jobs.service import RESERVED_PARAMS, Message

bp = Blueprint("messages", __name__)
SENT = "The request was successful."


def _message_env() -> dict[str, str]:
    """Query parameters other than the reserved ones; ``jobs.message_env`` decides which
    variables they may set, once the actor is known."""
    return {name: value for name, value in request.args.items()
            if name not in RESERVED_PARAMS}


def _read_message() -> Message:
    env = _message_env()
    if request.mimetype == "application/octet-stream":
        return Message("", "application/octet-stream", env, request.get_data())
    if is_json():
        body: Any = json_body()
        if isinstance(body, dict) and isinstance(body.get("message"), str):
            return Message(no_nul("message", body["message"]), "str", env)
        if body is None:
            raise ValidationError("message", "is required (a string, or a JSON body)")
        return Message(body, "application/json", env)
    text = request.form.get("message")
    if text is None:
        raise ValidationError("message", "is required (form field, JSON body or binary)")
    return Message(no_nul("message", text), "str", env)


@bp.post("/<actor_id>/messages")
def send_message(actor_id: str) -> Response:
    service, who = platform(), caller()
    reply = service.send_message(who, actor_id, _read_message())
    if request.args.get("_abaco_synchronous", "").lower() == "true":
        return _synchronous(actor_id, reply["execution_id"])
    return envelope(views.sent(reply, actor_id, who.user), SENT)


def _synchronous(actor_id: str, execution_id: str) -> Response:
    try:
        body, mimetype = platform().synchronous_reply(caller(), actor_id, execution_id)
    except Timeout as exc:
        return error(exc.message, 408, {"execution_id": execution_id})
    return Response(body, mimetype=mimetype)


@bp.get("/<actor_id>/messages")
def count_messages(actor_id: str) -> Response:
    count = platform().queued_count(caller(), actor_id)
    return envelope({"messages": count}, "The request was successful.")


@bp.delete("/<actor_id>/messages")
def purge_messages(actor_id: str) -> Response:
    dropped = platform().purge_messages(caller(), actor_id)
    return envelope({"messages": 0, "purged": dropped}, "Inbox purged.")
