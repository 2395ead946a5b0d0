"""Fixtures of the coordinator API tests: the app on a free loopback port (a real ``web.AppRunner``)
over the session's private redis-server, in this test's own namespace, and an httpx client on it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from aiohttp import web

from emp.client import Client
from emp.coordinator.api import create_app
from emp.coordinator.api.server import runner_for
from emp.coordinator.settings import CoordinatorSettings
from emp.redis.calls import Calls

TOKEN = "tok-A-3f9c1e7d2b"
"""A token of the tests (a secret: tests check it never shows in answers or logs)."""


@dataclass
class Api:
    url: str
    client: Client
    calls: Calls
    http: httpx.AsyncClient
    """Sends the token when the API has one."""

    def anon(self, **kwargs: Any) -> httpx.AsyncClient:
        """A client without the token (the caller closes it)."""
        return httpx.AsyncClient(base_url=self.url, timeout=10, **kwargs)


ApiFactory = Callable[..., Any]


@pytest.fixture
async def start_api(redis_url: str, namespace: str) -> AsyncIterator[ApiFactory]:
    """``await start_api(tokens=[...], cors=[...])``: one running API (stopped at the end)."""
    runners: list[web.AppRunner] = []
    closers: list[Any] = []

    async def start(tokens: Sequence[str] = (TOKEN,), cors: Sequence[str] = ()) -> Api:
        client = Client(redis_url, namespace)
        closers.append(client.aclose)
        settings = CoordinatorSettings(api_tokens=list(tokens), cors_origins=list(cors), host="127.0.0.1", port=0)
        runner = runner_for(create_app(client, settings), shutdown_timeout=1.0)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        url = f"http://{host}:{port}"
        headers = {"Authorization": f"Bearer {tokens[0]}"} if tokens else {}
        http = httpx.AsyncClient(base_url=url, headers=headers, timeout=10)
        closers.append(http.aclose)
        return Api(url, client, await client.calls(), http)

    yield start
    for runner in runners:
        await runner.cleanup()
    for close in reversed(closers):
        await close()


def server_log(caplog: pytest.LogCaptureFixture) -> str:
    """What the server side logged (the test's own HTTP client logs its URLs: left out)."""
    return "\n".join(
        f"{r.getMessage()} {r.args!r}" for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))
    )


@pytest.fixture
async def api(start_api: ApiFactory) -> Api:
    """The API with one token (TOKEN)."""
    result: Api = await start_api()
    return result
