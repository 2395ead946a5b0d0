"""emp_job_times (read-only): exact counts of recently ended jobs per window, and a bounded sample of
their times (the coordinator's /api/stats and /metrics)."""

from __future__ import annotations

import pytest

from emp.errors import JobValidationError
from emp.redis.calls import Calls
from tests.redis.helpers import claim_job, namespace_keys, register, server_ms, submit

pytestmark = pytest.mark.anyio


async def test_counts_windows_and_sample(calls: Calls) -> None:
    await register(calls, "w")
    await submit(calls, "a", "b", "c", "d", "e")
    for _ in range(2):
        job = await claim_job(calls, "w")
        await calls.complete(job.id, job.attempt, "w")
    bad = await claim_job(calls, "w")
    await calls.fail(bad.id, bad.attempt, "w", "malformed", "x", 0.0)
    await calls.cancel("e")
    # One old completion, outside the short window: its score says it ended an hour ago.
    old = await claim_job(calls, "w")
    await calls.complete(old.id, old.attempt, "w")
    hour_ago = await server_ms(calls) - 3_600_000
    await calls.client.zadd(calls.keys.done("completed"), {old.id: hour_ago})
    before = await namespace_keys(calls)

    doc = await calls.job_times([60_000, 7_200_000], sample=10)
    assert doc["counts"] == {"completed": [2, 3], "failed": [1, 1], "cancelled": [1, 1]}
    assert abs(doc["now"] - await server_ms(calls)) < 5_000
    rows = {r["id"]: r for r in doc["rows"]}
    assert set(rows) == {"a", "b", "c", "d", "e"}
    assert rows["a"]["status"] == "completed" and rows["c"]["failure_class"] == "malformed"
    assert int(rows["a"]["started_at"]) >= int(rows["a"]["created_at"])
    assert int(rows["a"]["finished_at"]) >= int(rows["a"]["started_at"])
    assert "started_at" not in rows["e"], "a job cancelled before it ran has no start"
    assert await namespace_keys(calls) == before, "read-only"

    doc = await calls.job_times([60_000], sample=1)
    assert [r["status"] for r in doc["rows"]] == ["completed", "failed", "cancelled"], "newest per status"
    assert (await calls.job_times([60_000], sample=0))["rows"] == []


async def test_empty_namespace_and_bad_windows(calls: Calls) -> None:
    doc = await calls.job_times([60_000, 300_000], sample=100)
    assert doc["counts"] == {s: [0, 0] for s in ("completed", "failed", "cancelled")} and doc["rows"] == []
    for windows in ([0], [-5], []):
        with pytest.raises(JobValidationError, match="bad window"):
            await calls.job_times(windows, sample=1)
