"""/ws/monitor: one consistent snapshot, then the events after it; folded, they equal a fresh view."""

from __future__ import annotations

import asyncio
import base64
import os
import random
import socket
from typing import Any

import aiohttp
import anyio
import pytest

from emp.dashboard.live import LiveFleet, SnapshotLimits
from emp.dashboard.state import FleetState
from emp.model.job import ACTIVE, TERMINAL
from tests.coordinator_ws.helpers import AUTH, Fold, Served, receive, receive_until
from tests.coordinator_ws.lifecycle import Walk
from tests.integration.helpers import wire

pytestmark = pytest.mark.anyio


async def test_snapshot_then_the_events_after_it(served: Served) -> None:
    await served.calls.submit([wire(id="before")], 1 << 20)
    async with aiohttp.ClientSession() as http, http.ws_connect(served.url + "/ws/monitor", headers=AUTH) as ws:
        snap = await receive(ws)
        assert snap["type"] == "snapshot" and snap["reason"] == "connect"
        assert [j["id"] for j in snap["jobs"]] == ["before"] and snap["jobs"][0]["status"] == "pending"
        await served.calls.submit([wire(id="after", priority=70)], 1 << 20)
        ev = await receive(ws)
        assert ev["type"] == "event" and ev["event"] == "job_submitted" and ev["job"] == "after"
        assert ev["service"] == "simulation" and ev["data"] == {"service": "simulation", "priority": 70}
        assert ev["id"] > snap["stream_id"]


async def _tail(served: Served) -> str:
    return (await served.calls.snapshot(max_active=0, max_workers=0, max_recent=0)).stream_id


async def _caught_up(ws: aiohttp.ClientWebSocketResponse, fold: Fold, tail: str) -> None:
    """Fold every message (an ``events`` message whole) until the fold reached ``tail``."""
    with anyio.fail_after(30):
        while fold.last_id != tail:
            fold.add(await receive(ws, 30))


async def _fresh(served: Served) -> FleetState:
    """The dashboard's own fresh view (emp.dashboard.live), independent of the socket code."""
    live = LiveFleet(served.calls, FleetState(), limits=SnapshotLimits(5000, 5000, 5000, 5000))
    await live.start()
    return live.state


def _compare(folded: FleetState, fresh: FleetState) -> None:
    def open_jobs(state: FleetState) -> dict[str, tuple[Any, ...]]:
        # Worker and progress mean something only while a job runs (a retried job keeps its last
        # progress in the dashboard's fold, while Redis resets it).
        return {
            j.id: (str(j.status), j.service, j.attempt) + ((j.worker, j.progress) if j.status in ACTIVE else ())
            for j in state.jobs.values()
            if j.status not in TERMINAL
        }

    assert open_jobs(folded) == open_jobs(fresh)
    for job in fresh.jobs.values():  # every ended job the fresh view lists, the fold has, as it ended
        assert job.id in folded.jobs, job.id
        assert folded.jobs[job.id].status == job.status, job.id
    workers = {w.id: (w.status, w.job) for w in fresh.workers.values()}
    assert {w.id: (w.status, w.job) for w in folded.workers.values() if w.id in workers} == workers


async def test_snapshot_plus_events_equal_a_fresh_snapshot_after_thousands_of_random_events(served: Served) -> None:
    walk = Walk(served.calls, random.Random(10))
    await walk.register(6)
    for _ in range(100):
        await walk.step()
    start = await _tail(served)
    async with aiohttp.ClientSession() as http:
        early = await http.ws_connect(served.url + "/ws/monitor", headers=AUTH)
        first = Fold()
        first.add(await receive(early))
        late: aiohttp.ClientWebSocketResponse | None = None
        second = Fold()
        for i in range(2500):
            await walk.step()
            if i == 1200:
                # Connects while the walk goes on: its snapshot is taken between events.
                # ... and takes its events as `events` messages (several a message).
                late = await http.ws_connect(served.url + "/ws/monitor?batch=1", headers=AUTH)
        tail = await _tail(served)
        events = await served.calls.client.xrange(served.calls.keys.events, f"({start}", "+")
        assert len(events) >= 2000, f"the walk wrote only {len(events)} events"
        await _caught_up(early, first, tail)
        assert late is not None
        await _caught_up(late, second, tail)
        fresh = await _fresh(served)
        assert len([j for j in fresh.jobs.values() if j.status not in TERMINAL]) > 10
        _compare(first.state, fresh)
        _compare(second.state, fresh)
        assert first.snapshots == ["connect"] and second.snapshots == ["connect"]
        assert second.messages < second.events, "a batching monitor got one message per event"
        await early.close()
        await late.close()


async def _held_job(served: Served, job_id: str) -> tuple[str, int]:
    await served.calls.register_worker("w-slow", "m1", ["simulation"], {}, "", 600_000)
    await served.calls.submit([wire(id=job_id)], 1 << 20)
    claimed = await served.calls.claim("w-slow", "r1", 600_000)
    assert getattr(claimed, "id", None) == job_id
    return job_id, claimed.attempt  # type: ignore[union-attr]


@pytest.mark.parametrize("outbox_events", [50])
@pytest.mark.parametrize("query", ["", "?batch=1"])
async def test_a_client_that_never_reads_delays_no_one_and_gets_a_fresh_snapshot(served: Served, query: str) -> None:
    job_id, attempt = await _held_job(served, "big")
    url = served.url + "/ws/monitor"
    stalled = await _stalled_client(url + query)  # reads nothing from here on
    async with aiohttp.ClientSession() as http, http.ws_connect(url + query, headers=AUTH) as fast:
        fold = Fold()
        fold.add(await receive(fast))
        text = "x" * 16_000
        n = 600  # ~10 MB: far more than loopback buffers hold
        got: list[dict[str, Any]] = []

        async def read_fast() -> None:
            got.extend(
                await receive_until(fast, lambda m: m.get("data", {}).get("message", "").startswith(f"{n - 1} "))
            )

        async with anyio.create_task_group() as tg:
            tg.start_soon(read_fast)
            for i in range(n):
                await served.calls.progress(job_id, attempt, "w-slow", i / n * 100, f"{i} {text}")
        progress = [m for m in got if m["type"] == "event"]
        assert [int(m["data"]["message"].split()[0]) for m in progress] == list(range(n))  # every one, in order
        assert not any(m["type"] == "snapshot" for m in got)
        slow = [m for m in served.hub.monitors if m.outbox.dropped]  # type: ignore[attr-defined]
        assert len(slow) == 1, "the stalled socket's queue was dropped (and only its)"
    # Once it reads again, it gets a fresh snapshot that says why (after what was in the buffers).
    loop = asyncio.get_running_loop()
    seen = b""
    while b'"reason":"slow"' not in seen:
        with anyio.fail_after(20):
            chunk = await loop.sock_recv(stalled, 1 << 20)
        assert chunk, "the server closed the stalled socket"
        seen = seen[-100:] + chunk
    stalled.close()


async def _stalled_client(url: str) -> socket.socket:
    """A WebSocket client that completes the handshake and then never reads: a tiny receive
    buffer, so the server's sends to it block once the kernel buffers are full."""
    host, port = url.removeprefix("ws://").split("/")[0].split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, (host, int(port)))
    key = base64.b64encode(os.urandom(16)).decode()
    path = "/" + url.split("/", 3)[3]
    await loop.sock_sendall(
        sock,
        (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nAuthorization: {AUTH['Authorization']}\r\n\r\n"
        ).encode(),
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += await loop.sock_recv(sock, 1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


async def test_topic_and_filter_subscriptions(served: Served) -> None:
    calls = served.calls
    await calls.register_worker("wa", "m-a", ["svc-a"], {}, "", 600_000)
    async with aiohttp.ClientSession() as http:
        by_service = await http.ws_connect(served.url + "/ws/monitor?topics=jobs&service=svc-a", headers=AUTH)
        snap = await receive(by_service)
        assert snap["subscription"] == {"topics": ["jobs"], "filter": {"service": "svc-a"}}
        assert "workers" not in snap and "machines" not in snap
        progress_only = await http.ws_connect(served.url + "/ws/monitor", headers=AUTH)
        await receive(progress_only)
        await progress_only.send_json({"type": "subscribe", "topics": ["progress"], "filter": {"job_id": "a2"}})
        assert (await receive(progress_only))["type"] == "subscribed"
        assert (await receive(progress_only))["reason"] == "subscribe"
        machine = await http.ws_connect(served.url + "/ws/monitor?topics=workers&machine_id=m-b", headers=AUTH)
        assert [w["id"] for w in (await receive(machine))["workers"]] == []

        await calls.submit([wire("svc-b", id="b1"), wire("svc-a", id="a1"), wire("svc-a", id="a2")], 1 << 20)
        for job_id in ("a1", "a2"):
            claimed = await calls.claim("wa", "r-" + job_id, 600_000)
            assert getattr(claimed, "id", None) == job_id
            await calls.progress(job_id, 1, "wa", 50, "half")
            await calls.complete(job_id, 1, "wa", "{}")
        await calls.register_worker("wb", "m-b", ["svc-b"], {}, "", 600_000)
        await calls.submit([wire("svc-a", id="end")], 1 << 20)

        got = await receive_until(by_service, lambda m: m.get("job") == "end")
        assert {m["job"] for m in got} == {"a1", "a2", "end"}  # no svc-b job, no worker or progress events
        assert {m["event"] for m in got} == {"job_submitted", "job_started", "job_completed"}
        assert all(m["service"] == "svc-a" for m in got)

        got = await receive_until(progress_only, lambda m: m.get("event") == "job_progress")
        assert [(m["job"], m["data"]) for m in got] == [("a2", {"progress": 50, "message": "half"})]

        got = await receive_until(machine, lambda m: m.get("event") == "worker_registered")
        assert [(m["worker"], m["data"]["machine_id"]) for m in got] == [("wb", "m-b")]
        for ws in (by_service, progress_only, machine):
            await ws.close()


async def test_bad_subscriptions_are_refused_with_a_reason(served: Served) -> None:
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await http.ws_connect(served.url + "/ws/monitor?topics=everything", headers=AUTH)
        assert info.value.status == 400
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await http.ws_connect(served.url + "/ws/monitor?batch=maybe", headers=AUTH)
        assert info.value.status == 400
        async with http.ws_connect(served.url + "/ws/monitor", headers=AUTH) as ws:
            await receive(ws)
            await ws.send_json({"type": "subscribe", "topics": ["jobs"], "filter": {"colour": "red"}})
            err = await receive(ws)
            assert err["type"] == "error" and "colour" in err["error"]
            await ws.send_str("not json")
            assert (await receive(ws))["type"] == "error"
            await ws.send_json({"type": "heartbeat"})
            assert (await receive(ws))["type"] == "heartbeat_ack"


async def test_a_gap_in_the_stream_resnapshots_every_monitor_and_says_why(served: Served) -> None:
    calls = served.calls
    await calls.submit([wire(id="one")], 1 << 20)
    async with aiohttp.ClientSession() as http:
        sockets = [await http.ws_connect(served.url + "/ws/monitor", headers=AUTH) for _ in range(3)]
        for ws in sockets:
            await receive(ws)
        await calls.client.xtrim(calls.keys.events, maxlen=0)  # the reader's last id is gone
        await calls.submit([wire(id="two")], 1 << 20)
        for ws in sockets:
            got = await receive_until(ws, lambda m: m["type"] == "snapshot")
            assert got[-1]["reason"] == "gap" and "lost" in got[-1]["note"]
            assert {j["id"] for j in got[-1]["jobs"]} == {"one", "two"}
            await ws.close()
    assert served.hub.resyncs == {"gap": 1}
