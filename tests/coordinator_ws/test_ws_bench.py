"""emp.bench.ws_bench runs end to end with small numbers (the figures themselves are not asserted)."""

from __future__ import annotations

import pytest

from emp.bench import ws_bench

pytestmark = pytest.mark.anyio


async def test_ws_bench_runs_with_small_numbers(redis_url: str, namespace: str) -> None:
    report = await ws_bench.run(redis_url, namespace, writes=20, sockets=15, rate=50, seconds=0.5)
    latency, held = report["progress_to_monitor"], report["monitor_sockets"]
    assert latency["writes"] == 20 and 0 < latency["p50_ms"] <= latency["p99_ms"] <= latency["max_ms"]
    assert held["sockets"] == 15 and held["connected"] == 15 and held["got_last"] == 15
    assert held["events"] >= 2 and held["rss_mb_after"] > 0
