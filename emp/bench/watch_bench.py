"""What `emp watch` costs at fleet scale: the time to render a frame and the Redis load of one watcher.

:func:`run` builds a fleet in a fresh namespace (machine reports, registered workers, queued jobs,
a running job per worker with some progress), through :class:`~emp.redis.calls.Calls` as the
product writes it, then measures:

- render: p50 / p99 of rendering one frame (160 x 50) of the watch's data, ``frames`` times;
- Redis load: ``INFO commandstats`` before and after ``watch_s`` seconds of a running watcher
  (the event fold and the polls, no renderer): top-level calls per second (FCALL, FCALL_RO and
  the stream reads) and the server time they took (µs per second; FCALL's time includes the
  commands it runs inside).

Nothing else may use the Redis while it measures the load (its figure is the server's whole).
"""

from __future__ import annotations

import io
import statistics
import time
import uuid
from typing import Any

import anyio
from rich.console import Console

from emp.bench.commandstats import parse
from emp.dashboard.watch_live import Watcher
from emp.dashboard.watch_view import render_watch
from emp.defaults import MAX_PAYLOAD_BYTES
from emp.model.job import parse_submission
from emp.redis import library
from emp.redis.calls import Calls, ClaimedJob
from emp.redis.client import connect

SUBMIT_BATCH = 1000
TTL_MS = 3_600_000
"""Workers and machine reports of the bench live an hour: none lapses while it measures."""

TOP_LEVEL = ("fcall", "fcall_ro", "xread", "xrange", "xrevrange", "hgetall")
"""The commands a watcher sends itself (the rest are run inside its Functions)."""


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def build_fleet(calls: Calls, machines: int, workers: int, pending: int) -> None:
    """``machines`` machine reports with a GPU each, ``workers`` workers spread over them (each
    then running one job at 50 %), and ``pending`` more jobs queued."""
    for m in range(machines):
        record = {
            "status": "ready",
            "host": {"platform": "bench", "os": "Linux"},
            "gpus": {"gpus": [{"index": 0, "name": "RTX 4090", "utilization_pct": 50, "memory_used_mb": 8000,
                               "memory_total_mb": 24564, "temperature_c": 60}]},
        }  # fmt: skip
        await calls.machine_report(f"m{m:03d}", TTL_MS, record)
    caps = {"services": ["comfyui"], "hardware": {"gpu_memory_gb": 24}}
    for w in range(workers):
        await calls.register_worker(f"w{w:04d}", f"m{w % max(1, machines):03d}", ["comfyui"], caps, "t", TTL_MS)
    total = pending + workers
    for start in range(0, total, SUBMIT_BATCH):
        n = min(SUBMIT_BATCH, total - start)
        wires = [
            parse_submission({"id": f"j{start + i:07d}", "service": "comfyui", "payload": {}}).to_wire(
                MAX_PAYLOAD_BYTES
            )
            for i in range(n)
        ]
        await calls.submit(wires, MAX_PAYLOAD_BYTES)
    for w in range(workers):
        got = await calls.claim(f"w{w:04d}", uuid.uuid4().hex, TTL_MS, True)
        if isinstance(got, ClaimedJob):
            await calls.progress(got.id, got.attempt, f"w{w:04d}", 50.0, "bench")


async def run(
    redis_url: str,
    *,
    machines: int = 100,
    workers: int = 400,
    pending: int = 100_000,
    frames: int = 200,
    watch_s: float = 10.0,
    width: int = 160,
    height: int = 50,
    namespace: str | None = None,
) -> dict[str, Any]:
    """Build the fleet, measure, return the figures. ``namespace``: where (default a fresh one, left
    for inspection; `emp bench` passes its own and drops it)."""
    namespace = namespace or "watchbench" + uuid.uuid4().hex[:6]
    client = connect(redis_url)
    try:
        await library.ensure_loaded(client)
        calls = Calls(client, namespace)
        t0 = time.perf_counter()
        await build_fleet(calls, machines, workers, pending)
        build_s = time.perf_counter() - t0

        watcher = Watcher(Calls(connect(redis_url), namespace), namespace=namespace, redis_label="bench")
        t0 = time.perf_counter()
        await watcher.start()
        start_s = time.perf_counter() - t0

        console = Console(file=io.StringIO(), width=width, height=height, color_system="truecolor",
                          force_terminal=True)  # fmt: skip
        times: list[float] = []
        for _ in range(frames):
            t = time.perf_counter()
            console.print(render_watch(watcher.data, width, height, now_ms=watcher.now_ms()))
            times.append(time.perf_counter() - t)
            console.file = io.StringIO()

        before = parse(await client.info("commandstats"))
        async with anyio.create_task_group() as tg:
            tg.start_soon(watcher.live.follow)
            tg.start_soon(watcher.poll_forever)
            await anyio.sleep(watch_s)
            tg.cancel_scope.cancel()
        after = parse(await client.info("commandstats"))
        await watcher.calls.client.aclose()
        calls_n = sum(after[c].calls - (before[c].calls if c in before else 0) for c in TOP_LEVEL if c in after)
        usec = sum(after[c].usec - (before[c].usec if c in before else 0) for c in TOP_LEVEL if c in after)
        return {
            "namespace": namespace,
            "machines": machines,
            "workers": workers,
            "pending": pending,
            "build_s": round(build_s, 2),
            "watch_start_s": round(start_s, 3),
            "frame": f"{width}x{height}",
            "render_p50_ms": round(statistics.median(times) * 1000, 2),
            "render_p99_ms": round(_percentile(times, 0.99) * 1000, 2),
            "watch_s": watch_s,
            "redis_calls_per_s": round(calls_n / watch_s, 1),
            "redis_us_per_s": round(usec / watch_s, 1),
            "counts": watcher.data.counts,
        }
    finally:
        await client.aclose()
