"""``/actors/configs``: named values shared by actors (``jobs.configs``)."""

from __future__ import annotations

from flask import Blueprint, Response

from api.envelope import envelope
from api.requests import caller, object_body, platform

bp = Blueprint("configs", __name__)


@bp.get("/configs")
def list_configs() -> Response:
    return envelope(platform().list_configs(caller()), "Configs retrieved successfully.")


@bp.post("/configs")
def create_config() -> Response:
    return envelope(platform().create_config(caller(), object_body()),
                    "Config created successfully.")


@bp.get("/configs/<name>")
def get_config(name: str) -> Response:
    return envelope(platform().get_config(caller(), name), "Config retrieved successfully.")


@bp.put("/configs/<name>")
def update_config(name: str) -> Response:
    return envelope(platform().update_config(caller(), name, object_body()),
                    "Config updated successfully.")


@bp.delete("/configs/<name>")
def delete_config(name: str) -> Response:
    platform().delete_config(caller(), name)
    return envelope(None, "Config deleted successfully.")


@bp.get("/configs/<name>/permissions")
def config_permissions(name: str) -> Response:
    return envelope(platform().config_permissions(caller(), name),
                    "Permissions retrieved successfully.", user_keys=True)


@bp.post("/configs/<name>/permissions")
def set_config_permission(name: str) -> Response:
    return envelope(platform().set_config_permission(caller(), name, object_body()),
                    "Permission added successfully.", user_keys=True)
