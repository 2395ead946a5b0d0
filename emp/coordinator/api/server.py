"""Serving the API: :func:`serve` runs the aiohttp app, the leader-locked upkeep
(:func:`emp.coordinator.upkeep.upkeep_loop`) and the Redis restart watch
(:func:`emp.coordinator.redis_watch.watch_loop`) in one event loop until ``stop`` is set;
:func:`run_coordinator` adds SIGTERM/SIGINT handling (what `emp coordinator` runs).

Shutdown order: stop accepting connections and end open event streams (at their next read, within
``API_SSE_BLOCK_MS``), give requests in flight ``API_SHUTDOWN_TIMEOUT_S``, stop the upkeep (a
leader resigns, so another coordinator takes over at once), close the Redis pool. A pass cut short
leaves nothing half done: each of its steps is one Function call.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable

import anyio
from aiohttp import web

from emp import defaults
from emp.client import Client
from emp.coordinator.api.app import AccessLogger, create_app
from emp.coordinator.api.routes import LEADERSHIP, REDIS_WATCH
from emp.coordinator.leader import LeaderElection
from emp.coordinator.redis_watch import RestartWatch, watch_loop
from emp.coordinator.settings import CoordinatorSettings
from emp.coordinator.upkeep import upkeep_loop

__all__ = ["run_coordinator", "runner_for", "serve"]

log = logging.getLogger(__name__)
access_log = logging.getLogger("emp.coordinator.access")


def runner_for(app: web.Application, *, shutdown_timeout: float = defaults.API_SHUTDOWN_TIMEOUT_S) -> web.AppRunner:
    """The runner the API is served with: its access log never records a query string (a token may
    be in one), and a shutdown waits ``shutdown_timeout`` for requests in flight."""
    return web.AppRunner(
        app,
        access_log_class=AccessLogger,
        access_log=access_log,
        shutdown_timeout=shutdown_timeout,
        handle_signals=False,
    )


async def serve(
    client: Client,
    settings: CoordinatorSettings,
    *,
    stop: anyio.Event,
    grace_s: float = defaults.UNWORKABLE_GRACE_S,
    max_lost: int = defaults.MAX_LOST_LEASES,
    retention_s: float = defaults.RETENTION_S,
    maintenance: bool = True,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until ``stop`` is set. ``on_ready(url)`` is called once the port listens (port 0: the
    real port is in the URL). ``maintenance``: take part in the upkeep election (and sweep while
    leading); /health tells whether this process leads."""
    calls = await client.calls()  # connect and load the library before the first request
    app = create_app(client, settings)
    election = LeaderElection(calls) if maintenance else None
    if election is not None:
        app[LEADERSHIP] = election
    app[REDIS_WATCH] = watch = RestartWatch()
    runner = runner_for(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.host, settings.port)
        await site.start()
        host, port = _address(runner, settings)
        url = f"http://{host}:{port}"
        log.info("coordinator API on %s (auth %s)", url, "on" if settings.tokens() else "off")
        if on_ready is not None:
            on_ready(url)
        watching = anyio.CancelScope()

        async def watch_redis() -> None:
            with watching:
                await watch_loop(calls, watch)

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch_redis)
            if election is not None:
                tg.start_soon(
                    lambda: upkeep_loop(
                        calls,
                        stop=stop,
                        slow_interval_s=settings.maintenance_interval_s,
                        retention_s=retention_s,
                        grace_s=grace_s,
                        max_lost=max_lost,
                        election=election,
                    )
                )
            await stop.wait()
            watching.cancel()  # the upkeep ends by itself (a leader resigns first); the watch just stops
    finally:
        with anyio.move_on_after(defaults.API_SHUTDOWN_TIMEOUT_S * 2, shield=True):
            await runner.cleanup()


def _address(runner: web.AppRunner, settings: CoordinatorSettings) -> tuple[str, int]:
    for addr in runner.addresses:
        if isinstance(addr, tuple) and len(addr) >= 2:
            host = settings.host if settings.host not in ("", "0.0.0.0", "::") else str(addr[0])
            return (f"[{host}]" if ":" in host else host), int(addr[1])
    return settings.host, settings.port


async def run_coordinator(
    client: Client,
    settings: CoordinatorSettings,
    *,
    grace_s: float = defaults.UNWORKABLE_GRACE_S,
    max_lost: int = defaults.MAX_LOST_LEASES,
    retention_s: float = defaults.RETENTION_S,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """:func:`serve` until SIGTERM or SIGINT, then stop cleanly; closes ``client`` at the end."""
    stop = anyio.Event()

    async def watch_signals() -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                log.info("signal %d: stopping", signum)
                stop.set()  # serve() returns once its shutdown is done

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch_signals)
            await serve(
                client,
                settings,
                stop=stop,
                grace_s=grace_s,
                max_lost=max_lost,
                retention_s=retention_s,
                on_ready=on_ready,
            )
            tg.cancel_scope.cancel()
    finally:
        with anyio.move_on_after(2, shield=True):
            await client.aclose()
