"""Reading request bodies and parameters the way Abaco clients send them."""

from __future__ import annotations

import json
import math
from typing import Any

from flask import current_app, g, request

from jobs.errors import ValidationError
from jobs.models import MAX_INT, as_bool
from jobs.service import Caller, Platform


def platform() -> Platform:
    return current_app.config["ABACO_PLATFORM"]


def caller() -> Caller:
    """The caller of this request: a nonce (``?x-nonce=``), else the JWT (see jobs.auth).

    Resolved once per request, so a nonce is counted once.
    """
    if "caller" not in g:
        nonce = request.args.get("x-nonce") or request.headers.get("X-Nonce")
        service = platform()
        g.caller = service.redeem_nonce(nonce) if nonce else service.authenticate(
            dict(request.headers))
    return g.caller


def is_json() -> bool:
    return (request.mimetype or "").endswith("json")


def json_body(allow_constants: bool = False) -> Any:
    """The parsed JSON body; 400 naming the problem when it does not parse."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        return None
    try:
        return json.loads(raw) if allow_constants else json.loads(
            raw, parse_constant=_no_constant, parse_float=_finite)
    except RecursionError:
        raise ValidationError("body", "JSON nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationError("body", f"malformed JSON: {exc}") from None


def _finite(text: str) -> float:
    """``1e400`` parses as infinity, which no JSON reply can carry: refused."""
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"{text} is too large for a JSON number")
    return value


def _no_constant(name: str) -> Any:
    """NaN and Infinity are not JSON: refused, so no reply ever carries them."""
    raise ValueError(f"{name} is not a JSON value")


def object_body() -> dict[str, Any]:
    """A JSON object or form fields, whichever the client sent."""
    if is_json() or (not request.form and request.get_data(cache=True).strip()[:1] == b"{"):
        body = json_body(allow_constants=True)  # a field's own check names it
        if body is None:
            return {}
        if not isinstance(body, dict):
            raise ValidationError("body", "must be a JSON object")
        return body
    return {key: _form_value(key) for key in request.form}


def _form_value(key: str) -> Any:
    values = request.form.getlist(key)
    if len(values) == 1:
        text = values[0]
        if text[:1] in "{[":
            try:
                return json.loads(text, parse_constant=_no_constant)
            except (ValueError, RecursionError):
                return text
        return text
    return values


def bool_arg(name: str, default: bool = False) -> bool:
    """A true/false query parameter (true, false, 1, 0, yes, no); 400 naming it otherwise."""
    raw = request.args.get(name)
    return default if raw is None else as_bool(name, raw)


def int_arg(name: str, default: int, minimum: int = 0) -> int:
    return parse_int(name, request.args.get(name), default, minimum)


def parse_int(name: str, raw: str | None, default: int, minimum: int = 0) -> int:
    """A whole-number query parameter, 400 naming it when it is not one or out of range."""
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationError(name, f"must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ValidationError(name, f"must be at least {minimum}")
    if value > MAX_INT:
        raise ValidationError(name, f"must be at most {MAX_INT}")
    return value
