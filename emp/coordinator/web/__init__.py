"""The web monitor: static files (this package's ``*.html``, ``*.js``, ``*.css``, ``*.svg``) that the
coordinator serves at ``/`` and ``/static/<name>``, fed by ``/ws/monitor`` (docs/web.md).

No build step and nothing fetched from elsewhere: plain ES modules shipped in the wheel
(package-data in pyproject.toml). The files are read once, when the app is built, and served from
memory with their content type and a strict Content-Security-Policy (this origin only, no inline
script or style), so a payload that slipped into the page as markup could run nothing.

The routes are open (the page itself holds no data): the page asks for the API token and sends it
on every call. ``index.html`` carries one server-set fact, whether a token is needed
(``data-auth="token"`` or ``"none"``), so an open coordinator (loopback, ``--insecure``) asks for
nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from aiohttp import web

__all__ = ["CONTENT_TYPES", "CSP", "STATIC_ROUTES", "WebFiles", "add_web_routes", "load_files"]

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
"""The files served, by extension (anything else in the package, this module included, is not)."""

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
"""This origin only: no inline script or style, no eval, no other host (connect-src 'self' covers
the same host's ws:// in CSP level 3), and the page cannot be framed."""

HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Revalidate every time: a coordinator upgrade must not leave an old app.js in a tab's cache.
    "Cache-Control": "no-cache",
}

AUTH_MARK = 'data-auth="token"'
"""What index.html says when the coordinator needs a token (replaced with ``data-auth="none"`` when not)."""

STATIC_ROUTES = (("GET", "/"), ("GET", "/static/{name}"))
"""The web monitor's routes: pages, not API operations (/openapi.json leaves them out)."""


@dataclass(frozen=True, slots=True)
class WebFiles:
    """The page's files in memory: name -> (bytes, content type)."""

    files: dict[str, tuple[bytes, str]]

    def index(self, *, auth: bool) -> bytes:
        body = self.files["index.html"][0]
        if auth:
            return body
        return body.replace(AUTH_MARK.encode(), b'data-auth="none"')


def load_files() -> WebFiles:
    """Read the package's web files (raises when index.html is missing: a broken install)."""
    out: dict[str, tuple[bytes, str]] = {}
    for entry in resources.files(__package__ or __name__).iterdir():
        name = entry.name
        ext = name[name.rfind(".") :] if "." in name else ""
        if entry.is_file() and ext in CONTENT_TYPES:
            out[name] = (entry.read_bytes(), CONTENT_TYPES[ext])
    if "index.html" not in out or AUTH_MARK.encode() not in out["index.html"][0]:
        raise RuntimeError(f"the web monitor's index.html is missing or lacks {AUTH_MARK} (a broken install)")
    return WebFiles(out)


def _response(body: bytes, content_type: str) -> web.Response:
    resp = web.Response(body=body, headers=HEADERS)
    resp.headers["Content-Type"] = content_type
    return resp


def add_web_routes(app: web.Application, *, auth: bool) -> None:
    """Serve the monitor at ``/`` and its files at ``/static/<name>`` (``auth``: tokens are configured)."""
    files = load_files()
    index = files.index(auth=auth)
    html = files.files["index.html"][1]

    async def page(request: web.Request) -> web.StreamResponse:
        return _response(index, html)

    async def static(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        found = files.files.get(name)
        if found is None or name == "index.html":
            raise web.HTTPNotFound(reason="no such file")
        return _response(*found)

    for method, path in STATIC_ROUTES:
        app.router.add_route(method, path, page if path == "/" else static)
