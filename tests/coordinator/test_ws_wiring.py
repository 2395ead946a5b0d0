"""The WebSockets mounted on the coordinator's own app: the same tokens as the HTTP API, in the
Authorization header or (browsers, the original's clients) in ``?access_token=`` / ``?token=``; a
monitor gets its snapshot, and no token reaches a log line."""

from __future__ import annotations

import json
import logging

import aiohttp
import pytest

from tests.coordinator.conftest import TOKEN, Api, server_log

pytestmark = pytest.mark.anyio


async def _status_of_upgrade(url: str, **kwargs: object) -> int:
    async with aiohttp.ClientSession() as session:
        try:
            async with session.ws_connect(url, **kwargs) as ws:  # type: ignore[arg-type]
                await ws.close()
                return 101
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status


@pytest.mark.parametrize("path", ["/ws/monitor", "/ws/client"])
async def test_sockets_refuse_a_missing_or_wrong_token(api: Api, path: str) -> None:
    ws_url = api.url.replace("http://", "ws://") + path
    assert await _status_of_upgrade(ws_url) == 401
    assert await _status_of_upgrade(ws_url + "?token=wrong-token") == 401
    assert await _status_of_upgrade(ws_url, headers={"Authorization": "Bearer wrong-token"}) == 401


@pytest.mark.parametrize("how", ["header", "access_token", "token"])
async def test_monitor_accepts_the_token_and_sends_a_snapshot(
    api: Api, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    job_id = await api.client.submit("wiring-svc", {"n": 1})
    ws_url = api.url.replace("http://", "ws://") + "/ws/monitor"
    headers = {}
    if how == "header":
        headers["Authorization"] = f"Bearer {TOKEN}"
    else:
        ws_url += f"?{how}={TOKEN}"
    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url, headers=headers) as ws:
        first = json.loads((await ws.receive(timeout=10)).data)
    assert first["type"] == "snapshot"
    assert job_id in json.dumps(first)
    assert TOKEN not in server_log(caplog)
