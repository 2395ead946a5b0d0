"""T16 (reliability.md): the upkeep sweeps over a big keyspace never block Redis.

The keyspace is built through the real Functions and swept by the coordinator's own upkeep pass
(emp/bench/scale_bench.py, the same code as `emp bench scale`), passes back to back, while a separate
process PINGs every 2 ms. The full size of the issue: 500,000 finished and 50,000 active jobs (10,000 of
them orphaned by a dead worker) plus 10,000 unworkable ones. Building it takes about 55 s on a quiet
2-core machine (about 100 s on a busy one) and 2.8 GB of Redis; docs/reliability.md has the figures.
`emp bench scale --finished N --active N` runs the same at other sizes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from emp.bench.scale_bench import FULL, MAX_CALL_MS, MAX_PING_MS, render_text, run_scale_async
from tests.redis_proc import RedisProc

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(420)]

SIZE = FULL


async def test_sweeps_over_a_big_keyspace_keep_every_call_and_ping_under_50ms(tmp_path: Path) -> None:
    redis = RedisProc(tmp_path / "redis").start()
    try:
        result = await run_scale_async(redis.url, redis.port, SIZE, log=lambda _msg: None, max_sweep_s=240)
    finally:
        redis.stop()
    shown = f"{result.as_dict()}"
    print(render_text(result.as_dict()))

    # No call was slow: SLOWLOG (threshold 10 ms, so near misses are named too) has nothing >= 50 ms,
    # the probe never waited more than 50 ms, and no client was ever told BUSY.
    assert result.probe["samples"] > 500, shown
    assert result.probe["max_ms"] <= MAX_PING_MS, shown
    assert [e for e in result.slowlog if e["duration_ms"] >= MAX_CALL_MS] == [], shown
    assert result.busy_errors == 0 and result.probe["busy"] == 0, shown
    assert result.sweep_errors == [] and result.probe["errors"] == [], shown

    # ... and the sweeps did their whole job, each thing once.
    size, after = SIZE, result.after
    assert result.work["trimmed"] >= size.old and result.work["requeued"] == size.orphaned, shown
    assert result.work["unworkable"] == size.unworkable and result.work["workers_offline"] >= 1, shown
    # retention: every job that ended before the cutoff is gone (index entry and record), every later one kept
    assert after["old_listed"] == 0 and after["old_sampled_present"] == 0, shown
    assert after["recent_listed"] == size.recent and after["recent_sampled_missing"] == 0, shown
    # orphans requeued once, healthy leases untouched, unworkable jobs marked, nothing failed
    assert after["pending"] == size.orphaned and after["in_progress"] == size.active - size.orphaned, shown
    assert after["unworkable"] == size.unworkable and after["failed"] == 0, shown
    # every other criterion of the bench's own verdict; the p99 target (10 ms) is reported, not asserted:
    # back-to-back passes on a shared 2-core machine put it in the noise of the scheduler
    assert [f for f in result.failures() if not f.startswith("p99 PING")] == [], shown
