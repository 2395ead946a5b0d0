"""emp.bench.flow_bench at a tiny size: it runs, and its figures are sane (no timing asserted)."""

from __future__ import annotations

import pytest

from emp.bench.flow_bench import measure
from emp.redis.calls import Calls

pytestmark = pytest.mark.anyio


async def test_flow_bench_tiny(calls: Calls) -> None:
    fig = await measure(calls, chains=5)
    assert fig.chains == 5
    assert 0 <= fig.handoff_ms_p50 <= fig.handoff_ms_p99
    assert fig.complete_parent_us_p50 > 0 and fig.complete_plain_us_p50 > 0
    assert set(fig.to_json()) == {"chains", "handoff_ms", "complete_us"}
