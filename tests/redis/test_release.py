"""emp_release: give a job back without using an attempt; it keeps its place in the queue."""

from __future__ import annotations

import json

import pytest

from emp.errors import JobNotFound, StaleAttempt
from emp.redis.calls import Calls
from tests.redis.helpers import (
    claim_ids,
    claim_job,
    events,
    job_hash,
    job_state,
    register,
    stale_setup,
    submit,
)

pytestmark = pytest.mark.anyio


async def test_release_puts_the_job_back_pending_without_using_a_try(calls: Calls) -> None:
    await register(calls, "w")
    await submit(calls, "a")
    got = await claim_job(calls, "w")
    assert await calls.release("a", got.attempt, "w", "shutdown") == "pending"
    h = await job_hash(calls, "a")
    assert h["status"] == "pending" and "tries" not in h and "worker_id" not in h and "started_at" not in h
    assert h["attempt"] == "1", "the fencing token stays; the next claim makes attempt 2"
    assert await calls.client.zscore(calls.keys.leases, "a") is None
    hist = json.loads(h["history"])
    assert hist[0]["outcome"] == "released" and hist[0]["worker_id"] == "w" and hist[0]["error"] == "shutdown"
    w = await calls.client.hgetall(calls.keys.worker("w"))
    assert w["status"] == "idle" and w["job"] == ""
    ev = (await events(calls, "job_released"))[0]
    assert json.loads(ev["data"]) == {"reason": "shutdown"} and ev["attempt"] == "1"
    again = await claim_job(calls, "w")
    assert again.id == "a" and again.attempt == 2


async def test_a_released_job_keeps_its_place(calls: Calls) -> None:
    await register(calls, "w")
    await submit(calls, "first", "second")
    got = await claim_job(calls, "w")
    assert got.id == "first"
    await submit(calls, "third")
    await calls.release("first", got.attempt, "w", "drain")
    assert await claim_ids(calls, "w") == ["first", "second", "third"]


async def test_stale_release_is_refused_and_changes_nothing(calls: Calls) -> None:
    first, _ = await stale_setup(calls)
    before = await job_state(calls, "a")
    with pytest.raises(StaleAttempt):
        await calls.release("a", first.attempt, "w1", "late")
    assert await job_state(calls, "a") == before


async def test_release_of_an_unknown_job(calls: Calls) -> None:
    with pytest.raises(JobNotFound):
        await calls.release("nope", 1, "w", "x")
