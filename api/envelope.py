"""Abaco's response envelope and field-name casing.

Replies are ``{"status", "message", "result", "version"}``. Keys are camelCase
by default (``case`` setting ``snake`` keeps them snake_case); the contents of
user dicts (environment, state, Docker's finalState) are never renamed.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Response, current_app, jsonify, request

from jobs.models import to_camel, to_snake

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


def camel_case() -> bool:
    """Are this request's replies camelCase? The ``case`` setting says, except on the Tapis
    v3 routes (``/v3/...``), which are always snake_case as Tapis clients expect."""
    if request.path.startswith("/v3/"):
        return False
    return bool(current_app.config["ABACO_SETTINGS"].case == "camel")


_FIELD_HEAD = re.compile(r"^[A-Za-z][A-Za-z0-9]*")


def field_name(field: str) -> str:
    """A field as this request's clients spell it: ``defaultEnvironment.FOO`` stays so in
    camelCase and becomes ``default_environment.FOO`` in snake_case (only the field's own
    name changes, never a user key after it)."""
    if camel_case():
        return field
    return _FIELD_HEAD.sub(lambda m: to_snake(m.group(0)), field, count=1)


def envelope(result: Any, message: str = "", status: str = "success",
             code: int = 200, user_keys: bool = False) -> Response:
    """``user_keys``: the result is a dict keyed by user data (permissions keyed by user
    name), never renamed."""
    camel = camel_case()
    body = {"status": status, "message": message,
            "result": result if user_keys else recase(result, camel),
            "version": VERSION}
    response = jsonify(body)
    response.status_code = code
    return response


def error(message: str, code: int, result: Any = None) -> Response:
    return envelope(result, message, status="error", code=code)
