"""``/actors/{id}/executions``, one execution, and its logs."""

from __future__ import annotations

from flask import Blueprint, Response, request

from api import views
from api.envelope import envelope
from api.requests import bool_arg, caller, int_arg, platform

bp = Blueprint("executions", __name__)
LISTED = "Actor executions retrieved successfully."
ONE = "Actor execution retrieved successfully."
LOGS = "Logs retrieved successfully."


@bp.get("/<actor_id>/executions")
def list_executions(actor_id: str) -> Response:
    offset = int_arg("offset", 0)
    limit = int_arg("limit", 1000, minimum=1)
    result = platform().list_executions(caller(), actor_id, offset, limit)
    return envelope(result, LISTED)


@bp.get("/<actor_id>/executions/<execution_id>")
def get_execution(actor_id: str, execution_id: str) -> Response:
    result = platform().get_execution(caller(), actor_id, execution_id)
    return envelope(views.execution(result), ONE)


@bp.delete("/<actor_id>/executions/<execution_id>")
def cancel_execution(actor_id: str, execution_id: str) -> Response:
    result = platform().cancel_execution(caller(), actor_id, execution_id)
    return envelope(views.execution(result), "Execution cancelled.")


@bp.get("/<actor_id>/executions/<execution_id>/logs")
def get_logs(actor_id: str, execution_id: str) -> Response:
    if bool_arg("follow"):
        follower = platform().follow_logs(caller(), actor_id, execution_id)
        return Response(iter(follower), mimetype="text/plain",
                        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    logs = platform().get_logs(caller(), actor_id, execution_id)
    return envelope(views.execution_logs(logs, actor_id, execution_id), LOGS)


@bp.get("/<actor_id>/executions/<execution_id>/results")
def next_result(actor_id: str, execution_id: str) -> Response:
    """The next unread result, as bytes; an empty body when there is none (Abaco)."""
    data = platform().next_result(caller(), actor_id, execution_id)
    return Response(data or b"", mimetype="application/octet-stream")


@bp.post("/<actor_id>/executions/<execution_id>/results")
def add_result(actor_id: str, execution_id: str) -> Response:
    """An execution hands back a result with its own token (as over its socket)."""
    platform().add_result(caller(), actor_id, execution_id, request.get_data())
    return envelope(None, "Result stored.")
