"""How a fake serves: in the caller's event loop, or as a process that prints the READY line.

emp.stand_ins.StandIn (and tests.fake_service.FakeService, built on it) starts
``python -m emp.stand_ins.<name> --port N`` and waits for ``READY http://HOST:PORT`` on stdout; the
process then runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from emp.stand_ins import READY_PREFIX


@asynccontextmanager
async def served(app: web.Application, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """``app`` served in this event loop on host:port (0: a free port) while the block runs; its URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    try:
        yield f"http://{host}:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def ready_until_stopped(url: str) -> None:
    """Say READY with ``url`` (the fake accepts connections now), then wait for SIGTERM or SIGINT."""
    print(f"{READY_PREFIX}{url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def run_app(app: web.Application, host: str, port: int) -> None:
    """A fake's process: serve ``app`` on host:port, say READY, and run until SIGTERM or SIGINT."""

    async def serve() -> None:
        async with served(app, host, port) as url:
            await ready_until_stopped(url)

    asyncio.run(serve())
