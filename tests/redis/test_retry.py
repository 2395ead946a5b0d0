"""emp_retry: a failed, cancelled or unworkable job runs again (manual), back in its place."""

from __future__ import annotations

import json

import pytest

from emp.errors import JobNotFound, NotRetryable
from emp.redis.calls import Calls
from tests.redis.helpers import (
    SERVICE,
    caps_with,
    claim_ids,
    claim_job,
    events,
    job_hash,
    job_state,
    register,
    sig_of,
    submit,
)

pytestmark = pytest.mark.anyio


async def test_retry_of_a_failed_job(calls: Calls) -> None:
    await register(calls, "w")
    await submit(calls, "a", "b")
    got = await claim_job(calls, "w")
    await calls.fail("a", got.attempt, "w", "malformed", "bad input", 0.0)
    await submit(calls, "c")
    assert await calls.retry("a") == "pending"
    h = await job_hash(calls, "a")
    assert h["status"] == "pending"
    assert "tries" not in h and "finished_at" not in h
    assert len(json.loads(h["history"])) == 1, "the history is kept"
    assert await calls.client.zscore(calls.keys.done("failed"), "a") is None
    for key in (calls.keys.job("a"), calls.keys.payload("a"), calls.keys.job_events("a")):
        assert await calls.client.ttl(key) == -1, f"{key} no longer expires"
    ev = (await events(calls, "job_retry"))[-1]
    assert json.loads(ev["data"]) == {"manual": True, "from": "failed"}
    # Back in its original place, ahead of b and c.
    assert await claim_ids(calls, "w") == ["a", "b", "c"]


async def test_retry_gives_the_job_its_attempts_back(calls: Calls) -> None:
    await register(calls, "w")
    await submit(calls, {"id": "a", "max_attempts": 1})
    got = await claim_job(calls, "w")
    await calls.fail("a", got.attempt, "w", "transient", "x", 0.0)
    assert (await job_hash(calls, "a"))["status"] == "failed"
    await calls.retry("a")
    again = await claim_job(calls, "w")
    assert again.attempt == 2
    outcome = await calls.fail("a", again.attempt, "w", "resource_exhausted", "oom", 0.0)
    assert outcome.code == "FAILED", "max_attempts=1: one counted try after the retry"


async def test_retry_of_a_job_that_avoided_a_worker_clears_the_avoid(calls: Calls) -> None:
    await register(calls, "w")
    await register(calls, "bigger", caps=caps_with(hardware={"gpu_memory_gb": 80}))
    await submit(calls, {"id": "a", "max_attempts": 2})
    got = await claim_job(calls, "w")
    await calls.fail("a", got.attempt, "w", "resource_exhausted", "oom", 0.0)
    h = await job_hash(calls, "a")
    assert "avoid_workers" in h and h["gpu_gb_over"] == "24"
    await calls.cancel("a")
    await calls.retry("a")
    h = await job_hash(calls, "a")
    assert "avoid_workers" not in h and "gpu_gb_over" not in h
    members = await calls.client.zrange(calls.keys.queue(SERVICE, sig_of(SERVICE)), 0, -1)
    assert members == [f"{int(h['seq']):012x}:a"]
    assert (await claim_job(calls, "w")).id == "a"


async def test_retry_of_a_cancelled_job(calls: Calls) -> None:
    await submit(calls, "a")
    await calls.cancel("a")
    assert await calls.retry("a") == "pending"
    assert await calls.client.zscore(calls.keys.done("cancelled"), "a") is None


async def test_retry_of_an_unworkable_job_gives_its_signature_another_chance(calls: Calls) -> None:
    req = {"hardware": {"gpu_memory_gb": 80}}
    await submit(calls, {"id": "a", "requirements": req}, {"id": "b", "requirements": req})
    sig = sig_of(SERVICE, req)
    await calls.mark_unworkable(SERVICE, sig, 0)
    assert await calls.retry("a") == "pending"
    assert await calls.client.zscore(calls.keys.unworkable, "a") is None
    assert (await job_hash(calls, "b"))["status"] == "unworkable", "only the retried job moves"
    assert (await calls.client.hget(calls.keys.usigs(SERVICE), sig)).startswith("~"), "signature is reviving"
    assert await calls.client.hget(calls.keys.sigs(SERVICE), sig) is not None
    # New jobs of the signature are accepted as pending again (they get the grace period anew).
    assert await submit(calls, {"id": "c", "requirements": req}) == ["pending"]


@pytest.mark.parametrize("state", ["completed", "pending", "in_progress", "scheduled"])
async def test_retry_of_a_job_that_did_not_end_badly_is_refused(calls: Calls, state: str) -> None:
    await register(calls, "w")
    await submit(calls, {"id": "a", "run_at": 10**13} if state == "scheduled" else "a")
    if state in ("completed", "in_progress"):
        got = await claim_job(calls, "w")
        if state == "completed":
            await calls.complete("a", got.attempt, "w")
    before = await job_state(calls, "a")
    with pytest.raises(NotRetryable) as exc:
        await calls.retry("a")
    assert exc.value.status == state
    assert await job_state(calls, "a") == before


async def test_retry_of_an_unknown_job(calls: Calls) -> None:
    with pytest.raises(JobNotFound):
        await calls.retry("nope")
