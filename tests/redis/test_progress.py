"""emp_progress: a running job's progress, in its hash and its own event stream; fenced."""

from __future__ import annotations

import json

import pytest
from redis.exceptions import ResponseError

from emp.errors import JobNotFound, StaleAttempt
from emp.redis.calls import Calls
from tests.redis.helpers import (
    claim_job,
    events,
    job_events,
    job_hash,
    job_state,
    register,
    stale_setup,
    submit,
)

pytestmark = pytest.mark.anyio


async def test_progress_writes_the_hash_and_the_job_stream(calls: Calls) -> None:
    await register(calls, "w")
    await submit(calls, "a")
    got = await claim_job(calls, "w")
    await calls.progress("a", got.attempt, "w", 12.5, "sampling", json.dumps({"step": 5, "steps": 40}))
    await calls.progress("a", got.attempt, "w", 50)
    h = await job_hash(calls, "a")
    assert float(h["progress"]) == 50 and h["message"] == "sampling"
    evs = [e for e in await job_events(calls, "a") if e["type"] == "job_progress"]
    assert [json.loads(e["data"]) for e in evs] == [
        {"progress": 12.5, "message": "sampling", "step": 5, "steps": 40},
        {"progress": 50},
    ]
    assert all(e["worker"] == "w" and e["attempt"] == "1" for e in evs)
    # The same events are in the global stream, in the same order.
    assert [e["data"] for e in await events(calls, "job_progress")] == [e["data"] for e in evs]


async def test_progress_is_clamped_by_the_client_and_checked_by_the_function(calls: Calls) -> None:
    await register(calls, "w")
    await submit(calls, "a")
    got = await claim_job(calls, "w")
    await calls.progress("a", got.attempt, "w", 250)
    assert float((await job_hash(calls, "a"))["progress"]) == 100
    before = await job_state(calls, "a")
    with pytest.raises(ResponseError, match="EMP_INVALID progress"):
        await calls.client.fcall(
            "emp_progress", 1, calls.keys.job("a"), calls.keys.prefix, "a", got.attempt, "w", "101", "", ""
        )
    assert await job_state(calls, "a") == before


async def test_stale_progress_is_refused_and_changes_nothing(calls: Calls) -> None:
    first, _second = await stale_setup(calls)
    before = await job_state(calls, "a")
    with pytest.raises(StaleAttempt):
        await calls.progress("a", first.attempt, "w1", 99, "late")
    assert await job_state(calls, "a") == before


async def test_progress_after_cancel_is_stale(calls: Calls) -> None:
    await register(calls, "w")
    await submit(calls, "a")
    got = await claim_job(calls, "w")
    await calls.cancel("a")
    before = await job_state(calls, "a")
    with pytest.raises(StaleAttempt) as exc:
        await calls.progress("a", got.attempt, "w", 10)
    assert exc.value.status == "cancelled"
    assert await job_state(calls, "a") == before


async def test_progress_of_an_unknown_job(calls: Calls) -> None:
    with pytest.raises(JobNotFound):
        await calls.progress("nope", 1, "w", 10)


async def test_progress_of_an_assigned_job_starts_it_first(calls: Calls) -> None:
    """Progress means the work runs: an assigned job becomes in_progress (job_started, then the
    progress), so the record and every view folding the events agree."""
    await register(calls, "w")
    await submit(calls, "a")
    got = await calls.claim("w", "req-1", 30_000, start=False)
    assert getattr(got, "status", None) == "assigned"
    await calls.progress("a", got.attempt, "w", 10)  # type: ignore[union-attr]
    h = await job_hash(calls, "a")
    assert h["status"] == "in_progress" and int(h["started_at"]) >= int(h["assigned_at"])
    assert [e["type"] for e in await job_events(calls, "a")] == ["job_assigned", "job_started", "job_progress"]
    await calls.progress("a", got.attempt, "w", 20)  # type: ignore[union-attr]
    assert [e["type"] for e in await events(calls, "job_started")] == ["job_started"], "started once"
