"""The web dashboard at ``/dashboard`` (work in progress)."""

from __future__ import annotations

from flask import Blueprint, Response

bp = Blueprint("dashboard", __name__)


@bp.get("/dashboard")
def page() -> Response:
    return Response("dashboard", mimetype="text/plain")
