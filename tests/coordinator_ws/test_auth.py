"""Auth runs before the upgrade: no token or a wrong one gets HTTP 401 and no socket."""

from __future__ import annotations

import aiohttp
import pytest

from tests.coordinator_ws.helpers import AUTH, TOKEN, Served, receive

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("path", ["/ws/monitor", "/ws/client", "/ws/monitor/m1", "/ws/client/c1"])
async def test_refused_without_a_valid_token(served: Served, path: str) -> None:
    async with aiohttp.ClientSession() as http:
        for headers, query in (({}, ""), ({"Authorization": "Bearer wrong"}, ""), ({}, "?token=wrong")):
            with pytest.raises(aiohttp.WSServerHandshakeError) as info:
                await http.ws_connect(served.url + path + query, headers=headers)
            assert info.value.status == 401
        # A plain GET gets the same 401 (and the answer never echoes a token).
        async with http.get(served.url.replace("ws://", "http://") + path + "?token=wrong") as resp:
            assert resp.status == 401
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
            assert "wrong" not in await resp.text()


async def test_header_or_query_token_is_accepted(served: Served) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(served.url + "/ws/monitor", headers=AUTH) as ws:
            assert (await receive(ws))["type"] == "snapshot"
        async with http.ws_connect(served.url + f"/ws/monitor?token={TOKEN}") as ws:
            assert (await receive(ws))["type"] == "snapshot"
