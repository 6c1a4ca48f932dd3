"""The Flask app factory: settings are read once here and passed down."""

from __future__ import annotations

from flask import Flask, Response, jsonify, request

from api import errors
from api.openapi import spec
from api.routes import actors, executions, messages, sharing, state, workers
from jobs.service import Platform
from jobs.settings import Settings, load_settings

# Redis connections one API process may open. Under gevent workers every request in
# flight is a greenlet that can hold a connection for as long as it waits (a synchronous
# message blocks on the actor's event stream), so the pool must cover gunicorn's
# --worker-connections (the launcher's is 1000); redis-py's default of 100 would answer
# the 101st waiter "Too many connections".
REDIS_MAX_CONNECTIONS = 1100

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, PUT, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, X-Nonce, X-Jwt-Assertion-*",
}


def create_app(settings: Settings | None = None, platform: Platform | None = None) -> Flask:
    settings = settings or load_settings()
    platform = platform or Platform.from_settings(settings)
    pool = getattr(getattr(platform.store, "r", None), "connection_pool", None)
    if pool is not None:
        pool.max_connections = max(pool.max_connections or 0, REDIS_MAX_CONNECTIONS)
    app = Flask("abaco")
    app.config.update(
        ABACO_SETTINGS=settings,
        ABACO_PLATFORM=platform,
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        JSON_SORT_KEYS=False,
    )
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.url_map.strict_slashes = False
    for prefix in ("/actors", "/actors/v2"):
        suffix = prefix.replace("/", "_")
        for module in (sharing, actors, messages, executions, state, workers):
            app.register_blueprint(module.bp, url_prefix=prefix, name=module.bp.name + suffix)
    errors.register(app)

    @app.get("/openapi.json")
    def openapi() -> Response:
        return jsonify(spec())

    @app.after_request
    def cors(response: Response) -> Response:
        response.headers.update(CORS_HEADERS)
        return response

    @app.before_request
    def preflight() -> Response | None:
        if request.method == "OPTIONS":
            return Response(status=200)
        return None

    return app
