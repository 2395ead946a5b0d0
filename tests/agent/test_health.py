"""The agent's health endpoint, over real HTTP (httpx against the aiohttp server on a free port)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from emp.agent.health import HealthServer

pytestmark = pytest.mark.anyio

TOKEN = "s3cret-token"


class Agent:
    """Stands in for the machine agent behind the endpoint."""

    def __init__(self) -> None:
        self.ready = False
        self.restarted: list[str] = []
        self.logs = {"comfyui-gpu0": [f"line {i}" for i in range(500)]}

    def status(self) -> dict[str, Any]:
        return {"machine": {"id": "m1"}, "processes": [{"name": "comfyui-gpu0", "state": "running"}], "at": Path("/x")}

    def tail(self, name: str, lines: int) -> list[str] | None:
        log = self.logs.get(name)
        return None if log is None else log[-lines:] if lines else []

    async def restart(self, name: str) -> bool:
        if name not in self.logs:
            return False
        self.restarted.append(name)
        return True


async def serve(agent: Agent, token: str | None) -> tuple[HealthServer, str]:
    server = HealthServer(
        "127.0.0.1",
        0,
        status=agent.status,
        ready=lambda: agent.ready,
        tail=agent.tail,
        restart=agent.restart,
        token=token,
    )
    return server, await server.start()


@pytest.fixture
def agent() -> Agent:
    return Agent()


@pytest.fixture
async def client(agent: Agent) -> AsyncIterator[httpx.AsyncClient]:
    server, url = await serve(agent, TOKEN)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=5) as c:
            yield c
    finally:
        await server.stop()


async def test_health_is_ok_while_the_loop_runs(client: httpx.AsyncClient) -> None:
    r = await client.get("/health")
    assert (r.status_code, r.json()) == (200, {"status": "ok"})


async def test_ready_follows_the_agent(client: httpx.AsyncClient, agent: Agent) -> None:
    r = await client.get("/ready")
    assert (r.status_code, r.json()) == (503, {"ready": False})
    agent.ready = True
    r = await client.get("/ready")
    assert (r.status_code, r.json()) == (200, {"ready": True})


async def test_status_is_the_agents_json(client: httpx.AsyncClient) -> None:
    r = await client.get("/status")
    assert r.status_code == 200
    assert r.json() == {
        "machine": {"id": "m1"},
        "processes": [{"name": "comfyui-gpu0", "state": "running"}],
        "at": "/x",  # non-JSON values become strings instead of a 500
    }


async def test_logs_returns_the_last_lines_as_text(client: httpx.AsyncClient) -> None:
    r = await client.get("/logs", params={"process": "comfyui-gpu0", "lines": "3"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert r.text == "line 497\nline 498\nline 499\n"
    r = await client.get("/logs", params={"process": "comfyui-gpu0"})
    assert r.text.splitlines() == [f"line {i}" for i in range(400, 500)]  # 100 by default


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"process": "comfyui-gpu0", "lines": "many"}, 400),
        ({"process": "comfyui-gpu0", "lines": "-1"}, 400),
        ({"lines": "5"}, 400),
        ({"process": "nope", "lines": "5"}, 404),
    ],
)
async def test_logs_rejects_bad_requests(client: httpx.AsyncClient, params: dict[str, str], status: int) -> None:
    r = await client.get("/logs", params=params)
    assert r.status_code == status and "error" in r.json()


@pytest.mark.parametrize(
    "headers",
    [{"Authorization": f"Bearer {TOKEN}"}, {"authorization": f"bearer {TOKEN}"}, {"X-Emp-Token": TOKEN}],
)
async def test_restart_with_the_token(client: httpx.AsyncClient, agent: Agent, headers: dict[str, str]) -> None:
    r = await client.post("/restart", params={"process": "comfyui-gpu0"}, headers=headers)
    assert (r.status_code, r.json()) == (200, {"restarted": "comfyui-gpu0"})
    assert agent.restarted == ["comfyui-gpu0"]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}, {"X-Emp-Token": TOKEN + "x"}],
    ids=["none", "wrong", "no-scheme", "wrong-header"],
)
async def test_restart_without_a_valid_token_is_401(
    client: httpx.AsyncClient, agent: Agent, headers: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    r = await client.post("/restart", params={"process": "comfyui-gpu0"}, headers=headers)
    assert r.status_code == 401
    assert agent.restarted == []
    assert TOKEN not in caplog.text


async def test_restart_of_an_unknown_process_is_404(client: httpx.AsyncClient) -> None:
    r = await client.post("/restart", params={"process": "nope"}, headers={"X-Emp-Token": TOKEN})
    assert r.status_code == 404
    r = await client.post("/restart", headers={"X-Emp-Token": TOKEN})
    assert r.status_code == 400


async def test_restart_is_disabled_without_a_token(agent: Agent) -> None:
    server, url = await serve(agent, None)
    try:
        async with httpx.AsyncClient(base_url=url) as c:
            r = await c.post("/restart", params={"process": "comfyui-gpu0"}, headers={"X-Emp-Token": ""})
            assert r.status_code == 403
            assert (await c.get("/health")).status_code == 200
    finally:
        await server.stop()
    assert agent.restarted == []


async def test_stop_closes_the_port(agent: Agent) -> None:
    server, url = await serve(agent, TOKEN)
    assert url.startswith("http://127.0.0.1:") and not url.endswith(":0")
    await server.stop()
    async with httpx.AsyncClient(base_url=url) as c:
        with pytest.raises(httpx.ConnectError):
            await c.get("/health")
