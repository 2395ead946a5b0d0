"""emp.bench.flow_bench at a tiny size: it runs, and its figures are sane (no timing asserted)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from emp.bench.flow_bench import measure
from emp.redis import library
from emp.redis.calls import Calls
from emp.redis.client import connect

pytestmark = pytest.mark.anyio


@pytest.fixture
async def calls(redis_url: str, namespace: str) -> AsyncIterator[Calls]:
    client = connect(redis_url)
    await library.ensure_loaded(client)
    yield Calls(client, namespace)
    await client.aclose()


async def test_flow_bench_tiny(calls: Calls) -> None:
    fig = await measure(calls, chains=5)
    assert fig.chains == 5
    assert 0 <= fig.handoff_ms_p50 <= fig.handoff_ms_p99
    assert fig.complete_parent_us_p50 > 0 and fig.complete_plain_us_p50 > 0
    assert set(fig.to_json()) == {"chains", "handoff_ms", "complete_us"}
