"""The web dashboard at ``/dashboard``: a static page and its script and style sheet.

The page holds no data. Its script (``dashboard_assets/dashboard.js``) reads the same
JSON API any client reads, with the caller's own credentials (under ``auth = jwt`` it
asks for a token and keeps it in the tab's ``sessionStorage``), so the dashboard shows
exactly what that caller may read and nothing more. Everything is served with a strict
Content-Security-Policy: scripts and styles from these files only, no inline script,
data from this origin only.
"""

from __future__ import annotations

import html
from functools import cache
from pathlib import Path

from flask import Blueprint, Response, abort, request

bp = Blueprint("dashboard", __name__)

ASSETS_DIR = Path(__file__).resolve().parent / "dashboard_assets"
# The only files served under /dashboard/assets/, with their types.
ASSETS = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}


@cache
def _asset(name: str) -> bytes:
    return (ASSETS_DIR / name).read_bytes()


@bp.get("/dashboard")
def page() -> Response:
    """The page's shell. Links are made from the request's script root, so the page works
    behind a proxy that mounts the API under a path."""
    root = html.escape(request.script_root, quote=True)
    text = _asset("index.html").decode().replace("{{root}}", root)
    return Response(text, mimetype="text/html")


@bp.get("/dashboard/assets/<name>")
def asset(name: str) -> Response:
    kind = ASSETS.get(name)
    if kind is None:
        abort(404)
    return Response(_asset(name), mimetype=kind)


@bp.after_request
def secure(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response
