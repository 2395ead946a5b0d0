"""The coordinator's WebSockets: ``/ws/monitor`` (snapshot + events) and ``/ws/client`` (the original
system's client protocol), for any aiohttp application.

.. code-block:: python

    app = web.Application()
    add_ws_routes(app, client, authorized=lambda request: check_token(request))

One reader of the ``events`` stream per app (:class:`~emp.coordinator.ws.hub.Hub`) fans out to
every socket; docs/ws.md describes the messages. Modules: ``protocol`` (monitor messages, pure),
``original`` (the original's client protocol, pure), ``hub`` (the reader, outboxes, snapshot
rounds), ``sockets`` (the aiohttp handlers).
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from emp.client import Client

from .hub import OUTBOX_EVENTS, Hub
from .sockets import client_handler, monitor_handler

__all__ = ["HUB", "Hub", "add_ws_routes"]

HUB = web.AppKey("emp_ws_hub", Hub)
"""Where the app keeps its hub (tests and /metrics read its counters)."""

CLOSE_GOING_AWAY = 1001


def add_ws_routes(
    app: web.Application,
    client: Client,
    authorized: Callable[[web.Request], bool],
    *,
    outbox_events: int = OUTBOX_EVENTS,
    may_cancel: Callable[[web.Request], bool] | None = None,
) -> None:
    """Add GET /ws/monitor and GET /ws/client (also with the original's trailing ``/{id}``), and the
    app.on_startup / on_shutdown / on_cleanup hooks that run the shared event-stream reader (one per
    app, fanning out to every socket).

    ``authorized(request)`` decides before the upgrade (HTTP 401 when it says no); a browser cannot
    set headers on a WebSocket, so it should accept the token in the query too (``?token=``).
    ``may_cancel(request)``: whether a /ws/client socket may send ``cancel_job`` (the coordinator
    allows it to admin tokens only; None: to every authorized socket).
    The caller owns ``client`` (opens and closes it). ``outbox_events``: events queued per socket
    before it counts as slow.
    """
    hub = Hub(client, outbox_events=outbox_events)
    app[HUB] = hub
    monitor = monitor_handler(hub, authorized)
    original = client_handler(hub, client, authorized, may_cancel)
    app.router.add_get("/ws/monitor", monitor)
    app.router.add_get("/ws/monitor/{monitor_id}", monitor)
    app.router.add_get("/ws/client", original)
    app.router.add_get("/ws/client/{client_id}", original)

    async def start(_: web.Application) -> None:
        await hub.start()

    async def close_sockets(_: web.Application) -> None:
        # Close the sockets on shutdown, or the server waits for every handler to end on its own.
        for ws in list(hub.sockets):
            await ws.close(code=CLOSE_GOING_AWAY, message=b"server shutdown")

    async def stop(_: web.Application) -> None:
        await hub.stop()

    app.on_startup.append(start)
    app.on_shutdown.append(close_sockets)
    app.on_cleanup.append(stop)
