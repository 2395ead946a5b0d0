"""emp_start: assigned -> in_progress, fenced by (job, attempt, worker)."""

from __future__ import annotations

import pytest

from emp.errors import JobNotFound, StaleAttempt
from emp.redis.calls import Calls
from tests.redis.helpers import (
    claim_job,
    events,
    job_events,
    job_hash,
    job_state,
    register,
    server_ms,
    stale_setup,
    submit,
)

pytestmark = pytest.mark.anyio


async def test_start_moves_an_assigned_job_to_in_progress(calls: Calls) -> None:
    await register(calls, "w")
    await submit(calls, "a")
    got = await claim_job(calls, "w", start=False)
    t0 = await server_ms(calls)
    assert await calls.start("a", got.attempt, "w") is True
    h = await job_hash(calls, "a")
    assert h["status"] == "in_progress" and int(h["started_at"]) >= t0
    assert [e["type"] for e in await job_events(calls, "a")] == ["job_assigned", "job_started"]
    ev = (await events(calls, "job_started"))[-1]
    assert (ev["job"], ev["worker"], ev["attempt"]) == ("a", "w", "1")


async def test_start_twice_is_a_no_op(calls: Calls) -> None:
    await register(calls, "w")
    await submit(calls, "a")
    got = await claim_job(calls, "w", start=False)
    assert await calls.start("a", got.attempt, "w") is True
    before = await job_state(calls, "a")
    assert await calls.start("a", got.attempt, "w") is False
    assert await job_state(calls, "a") == before


async def test_start_of_a_job_claimed_with_start_is_already(calls: Calls) -> None:
    await register(calls, "w")
    await submit(calls, "a")
    got = await claim_job(calls, "w")
    before = await job_state(calls, "a")
    assert await calls.start("a", got.attempt, "w") is False
    assert await job_state(calls, "a") == before


async def test_stale_attempt_is_refused_and_changes_nothing(calls: Calls) -> None:
    first, second = await stale_setup(calls)
    before = await job_state(calls, "a")
    with pytest.raises(StaleAttempt) as exc:
        await calls.start("a", first.attempt, "w1")
    assert exc.value.current_attempt == str(second.attempt) and exc.value.status == "in_progress"
    assert await job_state(calls, "a") == before


async def test_another_worker_cannot_start_it(calls: Calls) -> None:
    await register(calls, "w")
    await submit(calls, "a")
    got = await claim_job(calls, "w", start=False)
    before = await job_state(calls, "a")
    with pytest.raises(StaleAttempt):
        await calls.start("a", got.attempt, "intruder")
    assert await job_state(calls, "a") == before


async def test_unknown_job(calls: Calls) -> None:
    with pytest.raises(JobNotFound):
        await calls.start("nope", 1, "w")
