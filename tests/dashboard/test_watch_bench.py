"""emp.bench.watch_bench at tiny sizes: it builds the fleet and returns sane figures."""

from __future__ import annotations

import pytest

from emp.bench import watch_bench

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


async def test_watch_bench_runs_at_tiny_sizes(redis_url: str) -> None:
    figures = await watch_bench.run(redis_url, machines=3, workers=6, pending=50, frames=5, watch_s=1.5)
    assert figures["counts"]["pending"] == 50
    assert figures["counts"]["in_progress"] == 6
    assert figures["render_p50_ms"] > 0 and figures["render_p99_ms"] >= figures["render_p50_ms"]
    assert figures["redis_calls_per_s"] > 0 and figures["redis_us_per_s"] > 0
