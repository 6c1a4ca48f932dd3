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


@bp.get("/configs/<config_name>")
def get_config(config_name: str) -> Response:
    return envelope(platform().get_config(caller(), config_name),
                    "Config retrieved successfully.")


@bp.put("/configs/<config_name>")
def update_config(config_name: str) -> Response:
    return envelope(platform().update_config(caller(), config_name, object_body()),
                    "Config updated successfully.")


@bp.delete("/configs/<config_name>")
def delete_config(config_name: str) -> Response:
    platform().delete_config(caller(), config_name)
    return envelope(None, "Config deleted successfully.")


@bp.get("/configs/<config_name>/permissions")
def config_permissions(config_name: str) -> Response:
    return envelope(platform().config_permissions(caller(), config_name),
                    "Permissions retrieved successfully.", user_keys=True)


@bp.post("/configs/<config_name>/permissions")
def set_config_permission(config_name: str) -> Response:
    return envelope(platform().set_config_permission(caller(), config_name, object_body()),
                    "Permission added successfully.", user_keys=True)
