"""Bodies without a Content-Length (chunked) are held to ``max_body_bytes`` too.

Werkzeug caps such a stream at the limit and hands the application a silently
truncated body; this WSGI middleware reads it first, one byte past the limit, and
marks the request too large so the app answers 413 in its own envelope.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import Any

TOO_LARGE = "abaco.body_too_large"


class BoundedBody:
    """Wraps a WSGI app; see the module docstring."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if not environ.get("CONTENT_LENGTH") and _has_body(environ):
            data = _read_at_most(environ["wsgi.input"], self.limit + 1)
            if len(data) > self.limit:
                environ[TOO_LARGE] = True
                data = b""
            environ["wsgi.input"] = io.BytesIO(data)
            environ["CONTENT_LENGTH"] = str(len(data))
            environ.pop("wsgi.input_terminated", None)
        return self.app(environ, start_response)


def _has_body(environ: dict[str, Any]) -> bool:
    chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    return chunked or bool(environ.get("wsgi.input_terminated"))


def _read_at_most(stream: Any, size: int) -> bytes:
    parts, left = [], size
    while left > 0:
        chunk = stream.read(min(left, 1 << 16))
        if not chunk:
            break
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)
