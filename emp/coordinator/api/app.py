"""The coordinator's aiohttp application: :func:`create_app` wires the routes of
:mod:`emp.coordinator.api.routes` behind three middlewares, outermost first:

1. CORS (answers preflights before auth: browsers send no credentials on them);
2. errors (every error becomes ``{"error": {"code", "message", "fields"}}``);
3. auth (the bearer token and its scope, on every route that :data:`~emp.coordinator.api.scopes.ROUTE_SCOPES`
   does not leave open: 401 without a valid token, 403 when its scope is too narrow).

The access log (:class:`AccessLogger`) records method, path, status and time, never the query
string or headers, so a token can reach no log line.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.typedefs import Handler, Middleware

from emp import defaults
from emp.client import Client
from emp.coordinator.api.auth import Scope, TokenEntry, encode_tokens, grants, request_scope
from emp.coordinator.api.cors import cors_middleware
from emp.coordinator.api.errors import error_response, map_exception
from emp.coordinator.api.openapi import build_openapi
from emp.coordinator.api.routes import CLIENT, OPENAPI, REDIS_DOWN, ROUTES, SETTINGS, STOPPING, Route
from emp.coordinator.api.scopes import OPEN_PREFIXES_NEED_TOKEN, required_scope
from emp.coordinator.settings import CoordinatorSettings
from emp.coordinator.web import add_web_routes
from emp.coordinator.ws import add_ws_routes

__all__ = ["AccessLogger", "create_app"]

log = logging.getLogger(__name__)


class AccessLogger(AbstractAccessLogger):
    """One line per request: method, path (no query string: it may carry a token), status, ms."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info("%s %s %d %.1f ms", request.method, request.path, response.status, time * 1000)


def auth_middleware(tokens: Sequence[TokenEntry]) -> Middleware:
    """The token check of every route: what :data:`~emp.coordinator.api.scopes.ROUTE_SCOPES` says
    it needs, against the scope of the token the request carries (401: none or a wrong one; 403: a
    narrower scope, naming the one needed)."""
    specs: dict[tuple[str, str], Route] = {(r.method, r.path): r for r in ROUTES}

    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        resource = request.match_info.route.resource
        where = resource.canonical if resource is not None else request.path
        if resource is not None:
            needed = required_scope(request.method, where)
        else:  # no route (404, 405): still no answer to an anonymous caller under the API's prefixes
            needed = Scope.READ if request.path.startswith(OPEN_PREFIXES_NEED_TOKEN) else None
        if needed is None:
            return await handler(request)
        spec = specs.get((request.method, where))
        # Browsers cannot set headers on a WebSocket or an EventSource: those may carry it in the query.
        query_ok = spec.query_token if spec is not None else request.path.startswith("/ws")
        have = request_scope(request, tokens, allow_query=query_ok)
        if have is None:
            return web.Response(
                status=401,
                text='{"error": {"code": "unauthorized", "message": "missing or invalid bearer token", "fields": []}}',
                content_type="application/json",
                headers={"WWW-Authenticate": 'Bearer realm="emp"'},
            )
        if not grants(have, needed):
            method = "GET" if request.method == "HEAD" else request.method
            refused = error_response(
                403, "forbidden", f"{method} {where} needs the {needed} scope; this token has the {have} scope"
            )
            # RFC 6750 section 3.1: the scope that would do.
            refused.headers["WWW-Authenticate"] = f'Bearer realm="emp", error="insufficient_scope", scope="{needed}"'
            return refused
        return await handler(request)

    return auth


def create_app(client: Client, settings: CoordinatorSettings) -> web.Application:
    """The API over ``client`` (connected on first use; the caller closes it)."""
    tokens = encode_tokens(settings.tokens())

    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            if exc.content_type == "application/json":
                raise
            code = {401: "unauthorized", 403: "forbidden", 404: "no_route", 405: "method_not_allowed", 413: "too_large"}
            return error_response(exc.status, code.get(exc.status, "http"), exc.reason)
        except REDIS_DOWN as exc:
            log.warning("%s %s: Redis: %s", request.method, request.path, type(exc).__name__)
            return error_response(503, "unavailable", "the broker's Redis is unavailable")
        except Exception as exc:  # the boundary of a request: map emp's errors, hide the rest
            api = map_exception(exc)
            if api is None:
                log.exception("%s %s failed", request.method, request.path)
                return error_response(500, "internal", "internal error (logged by the coordinator)")
            if api.status == 503:
                log.warning("%s %s: %s", request.method, request.path, type(exc).__name__)
            return error_response(api.status, api.code, api.message, api.fields)

    app = web.Application(
        middlewares=[cors_middleware(settings.cors_origins), errors, auth_middleware(tokens)],
        client_max_size=defaults.API_MAX_BODY_BYTES,
    )
    app[CLIENT] = client
    app[SETTINGS] = settings
    app[STOPPING] = asyncio.Event()
    app[OPENAPI] = build_openapi(ROUTES, auth=bool(tokens))
    for r in ROUTES:
        app.router.add_route(r.method, r.path, r.handler)
    add_ws_routes(
        app,
        client,
        lambda request: request_scope(request, tokens, allow_query=True) is not None,
        may_cancel=lambda request: grants(request_scope(request, tokens, allow_query=True), Scope.ADMIN),
    )
    # The web monitor (docs/web.md): open pages, not API operations; the page sends the token itself.
    add_web_routes(app, auth=bool(tokens))

    async def on_shutdown(app: web.Application) -> None:
        app[STOPPING].set()  # open event streams end at their next read

    app.on_shutdown.append(on_shutdown)
    return app
