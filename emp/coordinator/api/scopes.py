"""Which token scope each route of the coordinator needs: one table for every route the app serves
(the API's, the WebSockets', the web monitor's), read by the auth middleware.

A route missing from the table needs ``admin`` (fail closed), and tests/coordinator/test_scopes.py
walks the app's router and fails when a route has no entry or an entry no route: a new route
cannot forget to say what it needs. ``None`` means open (no token at all).
"""

from __future__ import annotations

from emp.coordinator.api.auth import Scope

__all__ = ["OPEN_PREFIXES_NEED_TOKEN", "ROUTE_SCOPES", "required_scope"]

READ, SUBMIT, ADMIN = Scope.READ, Scope.SUBMIT, Scope.ADMIN

ROUTE_SCOPES: dict[tuple[str, str], Scope | None] = {
    # jobs
    ("POST", "/api/jobs"): SUBMIT,
    ("GET", "/api/jobs"): READ,
    ("GET", "/api/jobs/{id}"): READ,
    ("POST", "/api/jobs/{id}/cancel"): ADMIN,
    ("POST", "/api/jobs/{id}/retry"): ADMIN,
    ("GET", "/api/jobs/{id}/events"): READ,
    # flows
    ("POST", "/api/flows"): SUBMIT,
    ("GET", "/api/flows"): READ,
    ("GET", "/api/flows/{id}"): READ,
    # fleet and figures
    ("GET", "/api/workers"): READ,
    ("GET", "/api/machines"): READ,
    ("GET", "/api/services"): READ,
    ("GET", "/api/stats"): READ,
    ("GET", "/metrics"): READ,
    # WebSockets (docs/ws.md): the monitor only reads; the original's client protocol submits (its
    # cancel_job message needs admin, checked per message: emp.coordinator.ws.sockets).
    ("GET", "/ws/monitor"): READ,
    ("GET", "/ws/monitor/{monitor_id}"): READ,
    ("GET", "/ws/client"): SUBMIT,
    ("GET", "/ws/client/{client_id}"): SUBMIT,
    # open: liveness, the description, the web monitor's files (the page holds no data: it asks for a token)
    ("GET", "/health"): None,
    ("GET", "/openapi.json"): None,
    ("GET", "/"): None,
    ("GET", "/static/{name}"): None,
}

OPEN_PREFIXES_NEED_TOKEN = ("/api", "/ws", "/metrics")
"""Paths that no route matches (404, 405) still need a valid token under these prefixes, so an
anonymous caller cannot tell which routes exist."""


def required_scope(method: str, path: str) -> Scope | None:
    """The scope a route (its method and canonical path) needs; ``admin`` when it is not in the
    table. HEAD is GET's (aiohttp adds a HEAD route for every GET)."""
    key = ("GET" if method == "HEAD" else method, path)
    return ROUTE_SCOPES[key] if key in ROUTE_SCOPES else ADMIN
