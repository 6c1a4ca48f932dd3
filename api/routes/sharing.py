"""Permissions and nonces of actors and aliases, and the aliases themselves.

The same handlers serve ``/actors/{id}/...`` (an id, or an alias standing for
it) and ``/actors/aliases/{alias}/...`` (the alias's own permissions and nonces).
"""

from __future__ import annotations

from flask import Blueprint, Response

from api import views
from api.envelope import envelope
from api.requests import caller, object_body, platform

bp = Blueprint("sharing", __name__)


@bp.get("/aliases")
def list_aliases() -> Response:
    return envelope([views.alias(a) for a in platform().list_aliases(caller())],
                    "Aliases retrieved successfully.")


@bp.post("/aliases")
def create_alias() -> Response:
    return envelope(views.alias(platform().create_alias(caller(), object_body())),
                    "Alias created.")


@bp.get("/aliases/<alias>")
def get_alias(alias: str) -> Response:
    return envelope(views.alias(platform().get_alias(caller(), alias)),
                    "Alias retrieved successfully.")


@bp.put("/aliases/<alias>")
def update_alias(alias: str) -> Response:
    return envelope(views.alias(platform().update_alias(caller(), alias, object_body())),
                    "Alias updated.")


@bp.delete("/aliases/<alias>")
def delete_alias(alias: str) -> Response:
    platform().delete_alias(caller(), alias)
    return envelope(None, "Alias deleted.")


def _permissions_get(ref: str, alias_only: bool) -> Response:
    return envelope(platform().get_permissions(caller(), ref, alias_only),
                    "Permissions retrieved successfully.", user_keys=True)


def _permissions_post(ref: str, alias_only: bool) -> Response:
    return envelope(platform().set_permission(caller(), ref, object_body(), alias_only),
                    "Permission added.", user_keys=True)


def _nonces_get(ref: str, alias_only: bool) -> Response:
    return envelope([views.nonce(n) for n in platform().list_nonces(caller(), ref, alias_only)],
                    "Nonces retrieved successfully.")


def _nonces_post(ref: str, alias_only: bool) -> Response:
    return envelope(views.nonce(platform().create_nonce(caller(), ref, object_body(), alias_only)),
                    "Nonce created.")


def _nonce_get(ref: str, nonce_id: str, alias_only: bool) -> Response:
    return envelope(views.nonce(platform().get_nonce(caller(), ref, nonce_id, alias_only)),
                    "Nonce retrieved successfully.")


def _nonce_delete(ref: str, nonce_id: str, alias_only: bool) -> Response:
    platform().delete_nonce(caller(), ref, nonce_id, alias_only)
    return envelope(None, "Nonce deleted.")


def _ref(params: dict[str, str]) -> str:
    return params.get("actor_id") or params["alias"]


for prefix, alias_only in (("/<actor_id>", False), ("/aliases/<alias>", True)):
    kind = "alias" if alias_only else "actor"
    bp.add_url_rule(f"{prefix}/permissions", f"{kind}_permissions_get", methods=["GET"],
                    view_func=lambda a=alias_only, **kw: _permissions_get(_ref(kw), a))
    bp.add_url_rule(f"{prefix}/permissions", f"{kind}_permissions_post", methods=["POST"],
                    view_func=lambda a=alias_only, **kw: _permissions_post(_ref(kw), a))
    bp.add_url_rule(f"{prefix}/nonces", f"{kind}_nonces_get", methods=["GET"],
                    view_func=lambda a=alias_only, **kw: _nonces_get(_ref(kw), a))
    bp.add_url_rule(f"{prefix}/nonces", f"{kind}_nonces_post", methods=["POST"],
                    view_func=lambda a=alias_only, **kw: _nonces_post(_ref(kw), a))
    bp.add_url_rule(f"{prefix}/nonces/<nonce_id>", f"{kind}_nonce_get", methods=["GET"],
                    view_func=lambda nonce_id, a=alias_only, **kw: _nonce_get(_ref(kw),
                                                                              nonce_id, a))
    bp.add_url_rule(f"{prefix}/nonces/<nonce_id>", f"{kind}_nonce_delete",
                    methods=["DELETE"],
                    view_func=lambda nonce_id, a=alias_only, **kw: _nonce_delete(_ref(kw),
                                                                                 nonce_id, a))
