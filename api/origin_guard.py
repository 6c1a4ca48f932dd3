"""Under ``auth = none`` only this machine may call the API, and web pages may not.

With no credentials every caller is an admin, and the API listens on loopback only;
but a browser on this machine is on loopback too. Any page it opens could post a form
to ``http://127.0.0.1:8000/actors`` (a "simple" cross-origin request runs without
asking first), or resolve its own name to 127.0.0.1 (DNS rebinding) and then read the
answers as well, and register a privileged actor: the Docker engine, so root on the
host. So, under ``auth = none``:

- a request whose ``Origin`` is not the address it was sent to is refused (403);
- a request whose ``Host`` is not a loopback name is refused (403);
- no CORS headers are sent, so browsers keep pages of other origins from reading.

Clients that are not browsers send no ``Origin``; the dashboard is of the same origin.
Under ``auth = jwt`` a caller proves who it is with a header no page can forge, so
the API stays open to every origin there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import orjson

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class LoopbackOnly:
    """WSGI middleware: the refusals above, before anything else runs."""

    def __init__(self, inner: WSGIApp, version: str) -> None:
        self.inner = inner
        self.version = version

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]
                 ) -> Iterable[bytes]:
        host = environ.get("HTTP_HOST", "")
        origin = environ.get("HTTP_ORIGIN")
        if host and hostname(host) not in LOOPBACK_NAMES:
            return self._refuse(start_response, f"host {host!r} is not a loopback name; "
                                "under auth = none the API answers this machine only")
        if origin is not None and origin.rstrip("/") not in (f"http://{host}",
                                                             f"https://{host}"):
            return self._refuse(start_response, f"cross-origin request from {origin!r} "
                                "refused: under auth = none web pages of other origins "
                                "may not call the API")
        return self.inner(environ, start_response)

    def _refuse(self, start_response: Callable[..., Any], message: str) -> Iterable[bytes]:
        body = orjson.dumps({"status": "error", "message": message, "result": None,
                             "version": self.version})
        start_response("403 FORBIDDEN", [("Content-Type", "application/json"),
                                         ("Content-Length", str(len(body)))])
        return [body]


def hostname(host: str) -> str:
    """The name in a Host header, without its port (``[::1]:8000`` -> ``::1``)."""
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host
