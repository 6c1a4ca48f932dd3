"""Abaco's response envelope and field-name casing.

Replies are ``{"status", "message", "result", "version"}``. Keys are camelCase
by default (``case`` setting ``snake`` keeps them snake_case); the contents of
user dicts (environment, state, Docker's finalState) are never renamed.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Response, jsonify

from jobs.models import to_camel, to_snake

VERSION = "1.0.0-abaco-nx"
USER_DICTS = frozenset({"default_environment", "state", "final_state", "msg", "_links"})


_PLAIN = frozenset({str, int, float, bool, type(None)})


def recase(value: Any, camel: bool) -> Any:
    """Rename dict keys recursively, leaving user dicts as they are. Plain values are
    not descended into (most of a reply is plain values; a reply is recased once per
    request)."""
    if isinstance(value, list):
        return [item if type(item) in _PLAIN else recase(item, camel) for item in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for key, item in value.items():
        out[to_camel(key) if camel else key] = \
            item if type(item) in _PLAIN or key in USER_DICTS else recase(item, camel)
    return out


def camel_case() -> bool:
    """Are this Flask request's replies camelCase? (see ``views.where_for``)"""
    from api.views import here

    return here().camel


_FIELD_HEAD = re.compile(r"^[A-Za-z][A-Za-z0-9]*")


def field_name(field: str, camel: bool | None = None) -> str:
    """A field as this request's clients spell it: ``defaultEnvironment.FOO`` stays so in
    camelCase and becomes ``default_environment.FOO`` in snake_case (only the field's own
    name changes, never a user key after it)."""
    if camel_case() if camel is None else camel:
        return field
    return _FIELD_HEAD.sub(lambda m: to_snake(m.group(0)), field, count=1)


def envelope_body(result: Any, message: str, status: str, camel: bool,
                  user_keys: bool = False) -> dict[str, Any]:
    """The reply's body, whichever way the request came in (Flask or the fast lane)."""
    return {"status": status, "message": message,
            "result": result if user_keys else recase(result, camel), "version": VERSION}


def envelope(result: Any, message: str = "", status: str = "success",
             code: int = 200, user_keys: bool = False) -> Response:
    """``user_keys``: the result is a dict keyed by user data (permissions keyed by user
    name), never renamed."""
    response = jsonify(envelope_body(result, message, status, camel_case(), user_keys))
    response.status_code = code
    return response


def error(message: str, code: int, result: Any = None) -> Response:
    return envelope(result, message, status="error", code=code)
