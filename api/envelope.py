"""Abaco's response envelope and field-name casing.

Replies are ``{"status", "message", "result", "version"}``. Keys are camelCase
by default (``case`` setting ``snake`` keeps them snake_case); the contents of
user dicts (environment, state, Docker's finalState) are never renamed.
"""

from __future__ import annotations

from typing import Any

from flask import Response, current_app, jsonify

from jobs.models import to_camel

VERSION = "1.0.0-abaco-nx"
USER_DICTS = frozenset({"default_environment", "state", "final_state", "msg", "_links"})


def recase(value: Any, camel: bool) -> Any:
    """Rename dict keys recursively, leaving user dicts as they are."""
    if isinstance(value, list):
        return [recase(item, camel) for item in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for key, item in value.items():
        name = to_camel(key) if camel else key
        out[name] = item if key in USER_DICTS else recase(item, camel)
    return out


def envelope(result: Any, message: str = "", status: str = "success",
             code: int = 200, user_keys: bool = False) -> Response:
    """``user_keys``: the result is a dict keyed by user data (permissions keyed by user
    name), never renamed."""
    camel = current_app.config["ABACO_SETTINGS"].case == "camel"
    body = {"status": status, "message": message,
            "result": result if user_keys else recase(result, camel),
            "version": VERSION}
    response = jsonify(body)
    response.status_code = code
    return response


def error(message: str, code: int, result: Any = None) -> Response:
    return envelope(result, message, status="error", code=code)
