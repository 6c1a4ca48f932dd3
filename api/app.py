"""The Flask app factory: settings are read once here and passed down."""

from __future__ import annotations

import gc
from typing import Any, cast

import orjson
from flask import Flask, Response, jsonify, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import RequestEntityTooLarge

from api import dashboard, errors, tapis
from api.bounded_body import TOO_LARGE, BoundedBody
from api.envelope import VERSION
from api.fastlane import FastLane, reserved_words
from api.metrics import MetricsMiddleware
from api.openapi import spec
from api.origin_guard import LoopbackOnly
from api.routes import actors, configs, executions, messages, search, sharing, state, workers
from jobs.service import Platform
from jobs.settings import Settings, load_settings

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, PUT, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, X-Nonce, X-Jwt-Assertion-*",
}


class FastJSON(DefaultJSONProvider):
    """Replies (``jsonify``) encoded by orjson, several times faster than the standard
    library, keys kept in order; Flask's own encoder for anything orjson refuses, and
    for everything else (``dumps``)."""

    sort_keys = False

    def response(self, *args: Any, **kwargs: Any) -> Response:
        obj = self._prepare_response_obj(args, kwargs)
        try:
            body = orjson.dumps(obj)
        except TypeError:
            return cast(Response, super().response(*args, **kwargs))
        return Response(body, mimetype=self.mimetype)


def create_app(settings: Settings | None = None, platform: Platform | None = None) -> Flask:
    settings = settings or load_settings()
    platform = platform or Platform.from_settings(settings)
    app = Flask("abaco")
    app.config.update(
        ABACO_SETTINGS=settings,
        ABACO_PLATFORM=platform,
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        JSON_SORT_KEYS=False,
    )
    app.json = FastJSON(app)
    app.url_map.strict_slashes = False
    app.url_map.merge_slashes = False  # merged before routing (api.metrics), no redirect
    for prefix in ("/actors", "/actors/v2", "/v3/actors"):
        suffix = prefix.replace("/", "_")
        for module in (sharing, search, configs, actors, messages, executions, state,
                       workers):
            app.register_blueprint(module.bp, url_prefix=prefix, name=module.bp.name + suffix)
    errors.register(app)
    app.register_blueprint(tapis.bp)
    app.register_blueprint(dashboard.bp)

    document = spec(settings)

    @app.get("/openapi.json")
    def openapi() -> Response:
        return jsonify(document)

    cors_headers = cors_headers_for(settings)

    @app.after_request
    def cors(response: Response) -> Response:
        response.headers.update(cors_headers)
        return response

    @app.before_request
    def preflight() -> Response | None:
        if request.environ.get(TOO_LARGE):
            raise RequestEntityTooLarge()
        if request.method == "OPTIONS":
            return Response(status=200)
        return None

    app.wsgi_app = _layers(app, settings, platform, cors_headers)  # type: ignore[method-assign]
    # Everything made so far lives as long as the process: out of the collector's
    # sight, a full collection no longer walks it (25 ms of 120,000 objects, a pause
    # of every request this worker holds).
    gc.freeze()
    return app


def cors_headers_for(settings: Settings) -> dict[str, str]:
    """Any origin under auth = jwt; none under auth = none (see api.origin_guard)."""
    return CORS_HEADERS if settings.auth != "none" else {}


def _layers(app: Flask, settings: Settings, platform: Platform,
            cors_headers: dict[str, str]) -> Any:
    """The WSGI layers around Flask, outermost last: the body bound, the fast lane, the
    loopback guard (auth = none), the metrics."""
    wsgi: Any = BoundedBody(app.wsgi_app, settings.max_body_bytes)
    if settings.api_fast_lane == "on":
        reserved = reserved_words(rule.rule for rule in app.url_map.iter_rules())
        wsgi = FastLane(wsgi, platform, settings, reserved, cors_headers)
    if settings.auth == "none":
        wsgi = LoopbackOnly(wsgi, VERSION)
    return MetricsMiddleware(wsgi, app.url_map, platform.store, settings.metrics_token.reveal(),
                             open_without_token=settings.auth == "none")
