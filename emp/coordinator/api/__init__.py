"""The coordinator's HTTP API (aiohttp): jobs, fleet, figures, SSE, auth, CORS, OpenAPI.

:func:`create_app` builds the application over an :class:`emp.client.Client`;
:func:`emp.coordinator.api.server.run_coordinator` serves it next to the maintenance loop.
The routes and their contract are in docs/api.md.
"""

from emp.coordinator.api.app import create_app

__all__ = ["create_app"]
