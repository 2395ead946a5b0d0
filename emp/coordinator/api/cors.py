"""CORS for the coordinator's API: a small aiohttp middleware (allowed origins from settings).

An allowed ``Origin`` gets ``Access-Control-Allow-Origin`` (that origin, or ``*`` when any origin is
allowed) on every answer, errors included, so a browser app can read a 401 or 422. A preflight
(``OPTIONS`` with ``Access-Control-Request-Method``) from an allowed origin is answered here with
204, before auth: browsers never send credentials on a preflight. Other origins get no CORS
headers, so the browser blocks the answer; the request itself still needs the token.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from emp import defaults

__all__ = ["ALLOW_HEADERS", "ALLOW_METHODS", "CORS_ALLOW", "allowed_origin", "cors_middleware"]

CORS_ALLOW = web.RequestKey("cors_allow", str)
"""The Access-Control-Allow-Origin of this request (set when its origin is allowed), for handlers
that send their headers themselves (SSE)."""

ALLOW_METHODS = "GET, POST, OPTIONS"
ALLOW_HEADERS = "Authorization, Content-Type, Last-Event-ID"


def allowed_origin(origin: str | None, origins: Sequence[str]) -> str | None:
    """What to put in Access-Control-Allow-Origin for ``origin``; None when it is not allowed."""
    if not origin or not origins:
        return None
    if "*" in origins:
        return "*"
    return origin if origin.rstrip("/") in origins else None


def cors_middleware(origins: Sequence[str]) -> Middleware:
    allowed = tuple(origins)

    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        allow = allowed_origin(request.headers.get("Origin"), allowed)
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            if allow is None:
                raise web.HTTPForbidden(
                    text='{"error": {"code": "cors", "message": "origin not allowed"}}',
                    content_type="application/json",
                )
            return web.Response(
                status=204,
                headers={
                    "Access-Control-Allow-Origin": allow,
                    "Access-Control-Allow-Methods": ALLOW_METHODS,
                    "Access-Control-Allow-Headers": ALLOW_HEADERS,
                    "Access-Control-Max-Age": str(defaults.API_CORS_MAX_AGE_S),
                    "Vary": "Origin",
                },
            )
        if allow is not None:
            # Set before the handler runs: a streaming answer (SSE) sends its headers early.
            request[CORS_ALLOW] = allow
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            if allow is not None:
                _decorate(exc, allow)
            raise
        if allow is not None and not response.prepared:
            _decorate(response, allow)
        return response

    return cors


def _decorate(response: web.StreamResponse, allow: str) -> None:
    response.headers["Access-Control-Allow-Origin"] = allow
    response.headers.setdefault("Vary", "Origin")
