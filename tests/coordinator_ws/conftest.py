"""A bare aiohttp app with only the WebSocket routes, on a free loopback port, over the session's Redis."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web

from emp.client import Client
from emp.coordinator.ws import HUB, add_ws_routes
from emp.redis.calls import Calls
from tests.coordinator_ws.helpers import TOKEN, Served
from tests.integration.helpers import WorkerProcs


def authorized(request: web.Request) -> bool:
    """The caller's check: a bearer header, or ?token= (browsers cannot set WebSocket headers)."""
    header = request.headers.get("Authorization", "")
    given = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else request.query.get("token", "")
    return hmac.compare_digest(given.encode(), TOKEN.encode())


@pytest.fixture
def outbox_events() -> int:
    return 2000


@pytest.fixture
async def served(redis_url: str, namespace: str, outbox_events: int) -> AsyncIterator[Served]:
    async with Client(redis_url, namespace) as client:
        app = web.Application()
        add_ws_routes(app, client, authorized, outbox_events=outbox_events)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            yield Served(f"ws://127.0.0.1:{port}", app[HUB], await client.calls(), client)
        finally:
            await runner.cleanup()


@pytest.fixture
def calls(served: Served) -> Calls:
    return served.calls


@pytest.fixture
def workers(redis_url: str, namespace: str, tmp_path: Path) -> Iterator[WorkerProcs]:
    procs = WorkerProcs(redis_url, namespace, tmp_path)
    yield procs
    procs.kill_all()
