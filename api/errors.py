"""The one table that maps domain errors to HTTP statuses, and the handlers using it."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, current_app, request
from werkzeug.exceptions import HTTPException

from api.envelope import camel_case, error, field_name
from jobs import errors
from jobs.metrics import BackendErrors

LOG = logging.getLogger("abaco.api")

STATUS_OF: dict[type[errors.AbacoError], int] = {
    errors.ValidationError: 400,
    errors.Unauthenticated: 401,
    errors.PermissionDenied: 403,
    errors.NotFound: 404,
    errors.Gone: 410,
    errors.Timeout: 408,
    errors.Conflict: 409,
    errors.BackendUnavailable: 503,
    errors.BackendMisconfigured: 503,
    errors.SettingsError: 500,
}


def status_for(exc: errors.AbacoError) -> int:
    for kind in type(exc).__mro__:
        if kind in STATUS_OF:
            return STATUS_OF[kind]
    return 500


def error_reply(exc: errors.AbacoError, camel: bool, method: str, path: str,
                backend_errors: BackendErrors | None = None) -> tuple[int, str, Any]:
    """(HTTP status, message, result) of a domain error, whichever way the request came
    in; backing-service trouble is logged, and counted in ``backend_errors``."""
    status = status_for(exc)
    if status >= 500:
        LOG.warning("%s %s: %s", method, path, exc.message)
    if backend_errors is not None and isinstance(exc, errors.BackendUnavailable):
        backend_errors.seen(exc.message)
    if isinstance(exc, errors.ValidationError):
        field = field_name(exc.field, camel)
        return status, f"{field}: {exc.problem}", {**exc.details, "field": field}
    return status, exc.message, exc.details or None


def register(app: Flask) -> None:
    @app.errorhandler(errors.AbacoError)
    def domain_error(exc: errors.AbacoError) -> Response:
        backend_errors = current_app.config["ABACO_PLATFORM"].store.inbox.backend_errors
        status, message, result = error_reply(exc, camel_case(), request.method, request.path,
                                              backend_errors)
        return error(message, status, result)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        messages = {404: "no such route", 405: "method not allowed on this route",
                    413: "request body too large"}
        code = exc.code or 500
        response = error(messages.get(code, exc.description or exc.name), code)
        if code == 405 and exc.get_response().headers.get("Allow"):
            response.headers["Allow"] = exc.get_response().headers["Allow"]
        return response

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        LOG.exception("unexpected error")
        return error("internal error; see the api log", 500)
