"""/ws/monitor across a Redis restart: the socket stays open, is told that Redis restarted, and gets a
fresh snapshot of what the restarted (empty) Redis holds, then the events after it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from emp.client import Client
from emp.coordinator.ws import add_ws_routes
from emp.redis import embedded, library
from emp.redis.client import connect
from emp.redis.embedded import EmbeddedRedis
from tests.coordinator_ws.conftest import authorized
from tests.coordinator_ws.helpers import TOKEN
from tests.polling import wait_for

pytestmark = pytest.mark.anyio


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[EmbeddedRedis]:
    srv = EmbeddedRedis(tmp_path / "redis", persist=False).start()
    try:
        yield srv
    finally:
        srv.stop()


async def test_a_monitor_is_resnapshotted_after_redis_restarts_empty(
    server: EmbeddedRedis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = server.port
    async with Client(server.url, namespace) as client:
        before = await client.submit("restart-svc", {"n": 1})
        app = web.Application()
        add_ws_routes(app, client, authorized)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"ws://127.0.0.1:{runner.addresses[0][1]}/ws/monitor"
        messages: list[dict[str, Any]] = []
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.ws_connect(url, headers={"Authorization": f"Bearer {TOKEN}"}) as ws,
            ):

                async def read_until(pred: Any) -> bool:
                    msg = await ws.receive(timeout=20)
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        messages.append(json.loads(msg.data))
                    return any(pred(m) for m in messages)

                await wait_for(lambda: read_until(lambda m: m["type"] == "snapshot"), timeout=20, what="a snapshot")
                assert before in json.dumps(messages[-1])

                # Redis restarts empty on the same port; a job submitted after it.
                server.stop()
                monkeypatch.setattr(embedded, "free_port", lambda: port)
                server.start()
                fresh = connect(server.url)
                try:
                    await library.ensure_loaded(fresh)
                finally:
                    await fresh.aclose()
                messages.clear()

                def resnapshotted(m: dict[str, Any]) -> bool:
                    return m["type"] == "snapshot" and m.get("reason") == "redis_restart"

                await wait_for(lambda: read_until(resnapshotted), timeout=30, what="a redis_restart snapshot")
                snap = next(m for m in messages if resnapshotted(m))
                assert before not in json.dumps(snap), "the snapshot shows the restarted Redis, not the old state"

                after = await client.submit("restart-svc", {"n": 2})

                def names_after(m: dict[str, Any]) -> bool:
                    return m is not snap and after in json.dumps(m)

                await wait_for(lambda: read_until(names_after), timeout=20, what="the new job's event")
                assert not ws.closed
        finally:
            await runner.cleanup()
