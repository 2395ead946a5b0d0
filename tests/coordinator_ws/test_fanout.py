"""The monitors' fan-out: messages built once per subscription, a burst in few frames, the frame bytes."""

from __future__ import annotations

import json
import struct
from typing import Any

import aiohttp
import pytest

from emp.coordinator.ws.protocol import ProtocolError, batch_from_query, events_in, fanout_bytes, text_frame
from tests.coordinator_ws.helpers import AUTH, Fold, Served, flat, receive
from tests.integration.helpers import wire
from tests.polling import wait_for

pytestmark = pytest.mark.anyio


def _frames(data: bytes) -> list[str]:
    """Decode unmasked, final text frames back to back (RFC 6455 section 5.2), checking each header."""
    out: list[str] = []
    while data:
        first, second = data[0], data[1]
        assert first == 0x81 and not second & 0x80, "a final, unmasked text frame"
        size, at = second & 0x7F, 2
        if size == 126:
            (size,), at = struct.unpack("!H", data[2:4]), 4
        elif size == 127:
            (size,), at = struct.unpack("!Q", data[2:10]), 10
        out.append(data[at : at + size].decode())
        data = data[at + size :]
    return out


@pytest.mark.parametrize("size", [0, 125, 126, 65_535, 65_536, 200_000])
def test_a_text_frame_carries_its_payload_with_the_shortest_length(size: int) -> None:
    payload = "é" * (size // 2) + "x" * (size % 2)
    frame = text_frame(payload.encode())
    assert _frames(frame) == [payload]
    assert len(frame) - len(payload.encode()) == (2 if size < 126 else 4 if size < 65_536 else 10)


def test_fanout_bytes_are_one_events_frame_or_one_frame_per_event() -> None:
    texts = [json.dumps({"type": "event", "id": f"1-{i}", "data": {"n": i}}) for i in range(3)]
    [batch] = _frames(fanout_bytes(texts, batch=True))
    assert json.loads(batch) == {"type": "events", "events": [json.loads(t) for t in texts]}
    assert [dict(e) for e in events_in(json.loads(batch))] == [json.loads(t) for t in texts]
    assert _frames(fanout_bytes(texts, batch=False)) == texts


def test_the_batch_query_is_a_boolean() -> None:
    assert batch_from_query({}) is False and batch_from_query({"batch": "0"}) is False
    assert batch_from_query({"batch": "1"}) is True and batch_from_query({"batch": "true"}) is True
    with pytest.raises(ProtocolError, match="batch"):
        batch_from_query({"batch": "sometimes"})


async def _events(ws: aiohttp.ClientWebSocketResponse, fold: Fold, count: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while len(out) < count:
        msg = await receive(ws)
        fold.add(msg)
        out.extend(m for m in flat(msg) if m["type"] == "event")
    return out


async def test_a_burst_reaches_a_batching_monitor_in_few_messages_and_in_order(served: Served) -> None:
    """100 jobs submitted in one call (100 events at once): the same events, in the same order, to a
    batching socket, a per-event socket and a filtered one; the batching socket gets them in few
    messages, and every socket of one subscription shares one group."""
    async with aiohttp.ClientSession() as http:
        batching = [await http.ws_connect(served.url + "/ws/monitor?batch=1", headers=AUTH) for _ in range(3)]
        single = await http.ws_connect(served.url + "/ws/monitor", headers=AUTH)
        filtered = await http.ws_connect(served.url + "/ws/monitor?batch=1&job_id=j-7", headers=AUTH)
        folds = {id(ws): Fold() for ws in [*batching, single, filtered]}
        for ws in [*batching, single, filtered]:
            folds[id(ws)].add(await receive(ws))
        assert len(served.hub.groups) == 3  # three distinct (subscription, form) pairs for five sockets
        await served.calls.submit([wire(id=f"j-{i}") for i in range(100)], 1 << 20)
        expected = [f"j-{i}" for i in range(100)]
        for ws in batching:
            got = await _events(ws, folds[id(ws)], 100)
            assert [m["job"] for m in got] == expected
            assert folds[id(ws)].messages < 20, f"{folds[id(ws)].messages} messages for 100 events"
        got = await _events(single, folds[id(single)], 100)
        assert [m["job"] for m in got] == expected
        assert folds[id(single)].messages == 1 + folds[id(single)].events  # the snapshot, then one per event
        got = await _events(filtered, folds[id(filtered)], 1)
        assert [m["job"] for m in got] == ["j-7"]
        assert served.hub.flushes >= 1
        for ws in [*batching, single, filtered]:
            await ws.close()


async def test_a_monitor_that_changes_its_subscription_moves_group(served: Served) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(served.url + "/ws/monitor?batch=1", headers=AUTH) as ws:
        await receive(ws)
        await ws.send_json({"type": "subscribe", "topics": ["jobs"], "filter": {"job_id": "b"}})
        assert (await receive(ws))["type"] == "subscribed"
        assert (await receive(ws))["reason"] == "subscribe"
        assert [g.subscription.filter.job_id for g in served.hub.groups.values()] == ["b"]
        await served.calls.submit([wire(id="a"), wire(id="b")], 1 << 20)
        got = flat(await receive(ws))
        assert [m["job"] for m in got] == ["b"]

    async def gone() -> bool:  # the handler ends soon after the close: its group goes with it
        return not served.hub.groups

    await wait_for(gone, what="the closed monitor's group to go")
