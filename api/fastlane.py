"""The hot paths without Flask's request machinery.

Profiling ``GET /actors/{id}`` in-process put Flask's own work (request context,
URL map, Response objects, after-request hooks) at about as much as the request's
real work, and the hot paths are most of what clients send: posting messages and
reading actors, executions and logs. This WSGI layer, in front of the Flask app,
serves those when the request is a plain one:

    GET  {prefix}/{actor_id}
    GET  {prefix}/{actor_id}/executions            (?limit= and ?offset= only)
    GET  {prefix}/{actor_id}/executions/{eid}
    GET  {prefix}/{actor_id}/executions/{eid}/logs
    POST {prefix}/{actor_id}/messages              (a form's ``message``, no query)

with ``prefix`` ``/actors`` or ``/v3/actors``, no nonce, a body of known length. It
calls what the Flask routes call (the service, ``views``, ``envelope_body``, the
error table) and answers with the same headers, so the two lanes answer alike
(``tests/test_fastlane.py`` compares them request by request). Anything else, and
any path segment that is a word of another route (``/actors/search``), goes to
Flask unchanged.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl

import orjson
from werkzeug.http import HTTP_STATUS_CODES

from api.envelope import envelope_body
from api.errors import error_reply
from api.requests import parse_int
from api.routes.actors import RETRIEVED
from api.routes.executions import LISTED, LOGS, ONE
from api.routes.messages import SENT
from api.views import Where, actor, execution, execution_logs, sent, where_for
from jobs.errors import AbacoError
from jobs.models import no_nul
from jobs.service import Caller, Message, Platform
from jobs.settings import Settings

LOG = logging.getLogger("abaco.api")
PREFIXES = ("/actors/", "/v3/actors/")
FORM = "application/x-www-form-urlencoded"
_PAGING = re.compile(r"(?:(?:limit|offset)=\d{1,18})(?:&(?:limit|offset)=\d{1,18})*")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class FastLane:
    """WSGI middleware: the hot paths here, everything else to ``inner`` (Flask)."""

    def __init__(self, inner: WSGIApp, platform: Platform, settings: Settings,
                 reserved: frozenset[str], extra_headers: dict[str, str]) -> None:
        self.inner = inner
        self.platform = platform
        self.settings = settings
        self.reserved = reserved  # static words of other routes, never an actor id
        self.headers = list(extra_headers.items())
        self.places = {prefix: where_for(settings, prefix) for prefix in PREFIXES}

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]
                 ) -> Iterable[bytes]:
        route = self._route(environ)
        if route is None:
            return self.inner(environ, start_response)
        path = environ["PATH_INFO"]
        where = self.places["/v3/actors/" if path.startswith("/v3/") else "/actors/"]
        try:
            status, body = 200, envelope_body(*route(where), "success", where.camel)
        except AbacoError as exc:
            status, message, result = error_reply(exc, where.camel, environ["REQUEST_METHOD"],
                                                  path, self.platform.store.inbox.backend_errors)
            body = envelope_body(result, message, "error", where.camel)
        except Exception:  # noqa: BLE001 - the same answer Flask's last handler gives
            LOG.exception("unexpected error")
            status = 500
            body = envelope_body(None, "internal error; see the api log", "error", where.camel)
        data = orjson.dumps(body)
        start_response(f"{status} {HTTP_STATUS_CODES.get(status, 'Error').upper()}",
                       [("Content-Type", "application/json"),
                        ("Content-Length", str(len(data))), *self.headers])
        return [data]

    # -- which requests ------------------------------------------------------------------
    def _route(self, environ: dict[str, Any]) -> Callable[[Where], tuple[Any, str]] | None:
        path: str = environ.get("PATH_INFO", "")
        prefix = next((p for p in PREFIXES if path.startswith(p)), None)
        if prefix is None or not path.isascii():
            return None
        parts = path[len(prefix):].split("/")
        if any(not part or part in self.reserved for part in parts):
            return None  # another route's word, an empty segment (a trailing slash)
        if _nonce_given(environ):
            return None
        method, query = environ.get("REQUEST_METHOD"), environ.get("QUERY_STRING", "")
        if method == "GET":
            return self._get(parts, query, environ)
        if method == "POST" and len(parts) == 2 and parts[1] == "messages" and not query:
            return self._post_message(parts[0], environ)
        return None

    def _get(self, parts: list[str], query: str, environ: dict[str, Any]
             ) -> Callable[[Where], tuple[Any, str]] | None:
        size = len(parts)
        if size == 2 and parts[1] == "executions" and (not query or _PAGING.fullmatch(query)):
            paging: dict[str, str] = {}
            for name, value in parse_qsl(query):
                paging.setdefault(name, value)  # the first, as Flask's request.args.get
            return lambda w: self._executions(environ, parts[0], paging)
        if query:
            return None
        if size == 1:
            return lambda w: (actor(self.platform.get_actor(self._caller(environ), parts[0]),
                                    w), RETRIEVED)
        if size == 3 and parts[1] == "executions":
            return lambda w: (execution(self.platform.get_execution(
                self._caller(environ), parts[0], parts[2]), w), ONE)
        if size == 4 and parts[1] == "executions" and parts[3] == "logs":
            return lambda w: (execution_logs(self.platform.get_logs(
                self._caller(environ), parts[0], parts[2]), parts[0], parts[2], w), LOGS)
        return None

    def _post_message(self, actor_id: str, environ: dict[str, Any]
                      ) -> Callable[[Where], tuple[Any, str]] | None:
        text = _form_message(environ, self.settings.max_body_bytes)
        if text is None:
            return None

        def send(w: Where) -> tuple[Any, str]:
            who = self._caller(environ)
            message = Message(no_nul("message", text), "str", {})
            reply = self.platform.send_message(who, actor_id, message)
            return sent(reply, actor_id, who.user, w), SENT
        return send

    # -- what the Flask routes do, in the same words -------------------------------------
    def _executions(self, environ: dict[str, Any], actor_id: str,
                    paging: dict[str, str]) -> tuple[Any, str]:
        offset = parse_int("offset", paging.get("offset"), 0)
        limit = parse_int("limit", paging.get("limit"), 1000, minimum=1)
        return self.platform.list_executions(self._caller(environ), actor_id, offset,
                                             limit), LISTED

    def _caller(self, environ: dict[str, Any]) -> Caller:
        return self.platform.authenticate(environ_headers(environ))


def environ_headers(environ: dict[str, Any]) -> dict[str, str]:
    """The request's headers as Flask's ``dict(request.headers)`` has them."""
    headers = {key[5:].replace("_", "-").title(): value for key, value in environ.items()
               if key.startswith("HTTP_") and key not in ("HTTP_CONTENT_TYPE",
                                                         "HTTP_CONTENT_LENGTH")}
    for key, name in (("CONTENT_TYPE", "Content-Type"), ("CONTENT_LENGTH", "Content-Length")):
        if environ.get(key):
            headers[name] = environ[key]
    return headers


def _nonce_given(environ: dict[str, Any]) -> bool:
    return "HTTP_X_NONCE" in environ or "x-nonce" in environ.get("QUERY_STRING", "")


def _form_message(environ: dict[str, Any], max_bytes: int) -> str | None:
    """The ``message`` of a plain ASCII form body of known length, read here; None (and
    nothing read) for anything Flask should parse."""
    if environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower() != FORM or \
            "charset" in environ.get("CONTENT_TYPE", "").lower():
        return None
    try:
        length = int(environ.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None
    if not 0 < length <= min(max_bytes, 65536):
        return None
    body = environ["wsgi.input"].read(length)
    text = _message_field(body)
    if text is None:
        environ["wsgi.input"] = io.BytesIO(body)  # for Flask, which parses it after all
    return text


def _message_field(body: bytes) -> str | None:
    if not body.isascii():
        return None
    try:
        fields = parse_qsl(body.decode("ascii"), keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        return None
    return next((value for name, value in fields if name == "message"), None)


def reserved_words(rules: Iterable[str]) -> frozenset[str]:
    """Every static path segment of the app's routes: a request naming one is another
    route's (``/actors/aliases``), never an actor's or an execution's id."""
    words = set()
    for rule in rules:
        for segment in rule.split("/"):
            if segment and not segment.startswith("<"):
                words.add(segment)
    return frozenset(words - {"executions", "logs", "messages"})
