"""WebSocket figures for the closing note: progress-to-monitor latency, and many monitors held at once.

* :func:`progress_latency`: a job held by a bench worker; N progress writes (``Calls.progress``, the
  worker's own call), each timed from just before the write until a monitor socket subscribed to
  that job's progress receives it (so the figure includes the write's own round trip). p50/p99.
* :func:`hold_sockets`: K monitor sockets (default 1,000) open at once while progress events are
  written at a fixed rate; the process's memory and CPU, and whether every socket stayed connected
  and received the last event.

Both take the URL of a running app with the WebSocket routes; :func:`serve` starts a bare one in
this process (no auth), and :func:`run` does everything for ``emp bench``. In-process, the CPU
figure counts the sockets' client side too: it is an upper bound for the server's share.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import aiohttp
import psutil
from aiohttp import web

from emp import defaults
from emp.client import Client
from emp.coordinator.ws import add_ws_routes
from emp.model.job import parse_submission
from emp.redis.calls import Calls, ClaimedJob

BENCH_SERVICE = "bench-ws"
LEASE_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class LatencyFigure:
    writes: int
    p50_ms: float
    p99_ms: float
    max_ms: float


@dataclass(frozen=True, slots=True)
class SocketsFigure:
    sockets: int
    connected: int
    """Sockets still open at the end."""
    got_last: int
    """Sockets that received the last event written."""
    events: int
    rate_per_s: float
    seconds: float
    rss_mb_before: float
    rss_mb_after: float
    cpu_percent: float
    """CPU time of the process over the run, as a percentage of one core."""


@contextlib.asynccontextmanager
async def serve(client: Client, host: str = "127.0.0.1") -> AsyncIterator[str]:
    """A bare app with only the WebSocket routes, on a free port of ``host``; yields its ws:// URL."""
    app = web.Application()
    add_ws_routes(app, client, lambda _request: True)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"ws://{host}:{port}"
    finally:
        await runner.cleanup()


async def _held_job(calls: Calls) -> tuple[str, int, str]:
    """A job of BENCH_SERVICE held (started) by a bench worker: (job id, attempt, worker id)."""
    wid = "bench-ws-" + uuid.uuid4().hex[:8]
    job_id = "bench-ws-" + uuid.uuid4().hex[:8]
    await calls.register_worker(wid, "bench", [BENCH_SERVICE], {}, "", LEASE_MS)
    wire = parse_submission({"id": job_id, "service": BENCH_SERVICE}).to_wire()
    await calls.submit([wire], defaults.MAX_PAYLOAD_BYTES)
    claimed = await calls.claim(wid, uuid.uuid4().hex, LEASE_MS, start=True)
    if not isinstance(claimed, ClaimedJob) or claimed.id != job_id:
        raise RuntimeError(f"the bench worker could not claim its job (got {claimed!r})")
    return job_id, claimed.attempt, wid


async def _finish(calls: Calls, job_id: str, attempt: int, wid: str) -> None:
    await calls.complete(job_id, attempt, wid, "{}")
    await calls.worker_offline(wid, "bench done")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def progress_latency(
    calls: Calls, url: str, writes: int = 1000, headers: Mapping[str, str] | None = None
) -> LatencyFigure:
    """Time from a progress write to a monitor socket receiving it, ``writes`` times, one at a time."""
    job_id, attempt, wid = await _held_job(calls)
    samples: list[float] = []
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(f"{url}/ws/monitor?topics=progress&job_id={job_id}", headers=headers) as ws,
        ):
            first = json.loads((await ws.receive(timeout=30)).data)
            if first.get("type") != "snapshot":
                raise RuntimeError(f"expected a snapshot first, got {first.get('type')!r}")
            for i in range(writes):
                mark = str(i)
                start = time.perf_counter()
                await calls.progress(job_id, attempt, wid, 100 * i / max(1, writes), mark)
                while True:
                    msg = json.loads((await ws.receive(timeout=30)).data)
                    if msg.get("type") == "event" and msg.get("data", {}).get("message") == mark:
                        break
                samples.append((time.perf_counter() - start) * 1000)
    finally:
        await _finish(calls, job_id, attempt, wid)
    return LatencyFigure(writes, statistics.median(samples), _percentile(samples, 0.99), max(samples))


def _raise_fd_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


async def hold_sockets(
    calls: Calls,
    url: str,
    sockets: int = 1000,
    rate: float = 200.0,
    seconds: float = 10.0,
    headers: Mapping[str, str] | None = None,
    pid: int | None = None,
) -> SocketsFigure:
    """Open ``sockets`` monitors, write progress events at ``rate`` a second for ``seconds``, and
    report the memory and CPU of process ``pid`` (this one by default) and how the sockets fared."""
    _raise_fd_limit(2 * sockets + 256)
    proc = psutil.Process(pid)
    job_id, attempt, wid = await _held_job(calls)
    last_mark = "last"
    got_last = 0

    async def reader(ws: aiohttp.ClientWebSocketResponse, done: asyncio.Event) -> None:
        nonlocal got_last
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            if last_mark in msg.data and json.loads(msg.data).get("data", {}).get("message") == last_mark:
                got_last += 1
                if got_last == sockets:
                    done.set()

    try:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as http:
            opened = await asyncio.gather(
                *(
                    http.ws_connect(f"{url}/ws/monitor?topics=progress&job_id={job_id}", headers=headers)
                    for _ in range(sockets)
                )
            )
            for ws in opened:  # the snapshot first
                await ws.receive(timeout=60)
            rss_before = proc.memory_info().rss / 1e6
            cpu_before = sum(proc.cpu_times()[:2])
            done = asyncio.Event()
            readers = [asyncio.create_task(reader(ws, done)) for ws in opened]
            start = time.monotonic()
            events = 0
            interval = 1.0 / rate
            while (elapsed := time.monotonic() - start) < seconds:
                await calls.progress(job_id, attempt, wid, min(99.0, elapsed), f"e{events}")
                events += 1
                await asyncio.sleep(max(0.0, start + events * interval - time.monotonic()))
            await calls.progress(job_id, attempt, wid, 100.0, last_mark)
            events += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), timeout=30)
            took = time.monotonic() - start
            cpu = sum(proc.cpu_times()[:2]) - cpu_before
            rss_after = proc.memory_info().rss / 1e6
            connected = sum(1 for ws in opened if not ws.closed)
            for task in readers:
                task.cancel()
            for ws in opened:
                await ws.close()
    finally:
        await _finish(calls, job_id, attempt, wid)
    return SocketsFigure(
        sockets=sockets,
        connected=connected,
        got_last=got_last,
        events=events,
        rate_per_s=events / took,
        seconds=took,
        rss_mb_before=rss_before,
        rss_mb_after=rss_after,
        cpu_percent=100 * cpu / took,
    )


async def run(
    redis_url: str,
    namespace: str,
    *,
    writes: int = 1000,
    sockets: int = 1000,
    rate: float = 200.0,
    seconds: float = 10.0,
) -> dict[str, Any]:
    """Both figures against a bare in-process app; a JSON-ready dict for ``emp bench``."""
    async with Client(redis_url, namespace) as client, serve(client) as url:
        calls = await client.calls()
        latency = await progress_latency(calls, url, writes)
        held = await hold_sockets(calls, url, sockets, rate, seconds)
    return {"progress_to_monitor": asdict(latency), "monitor_sockets": asdict(held)}
