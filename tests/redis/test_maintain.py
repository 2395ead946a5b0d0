"""emp_maintain: promote due scheduled jobs, requeue expired leases (bounded pages, idempotent)."""

from __future__ import annotations

import json

import pytest

from emp.redis.calls import Calls, OutcomeCode
from tests.polling import wait_for
from tests.redis.helpers import (
    claim_job,
    events,
    job_events,
    job_hash,
    register,
    server_ms,
    submit,
)

pytestmark = pytest.mark.anyio


async def requeued_by_maintain(calls: Calls, max_lost: int = 3) -> int:
    async def step() -> int:
        _, requeued, _ = await calls.maintain(100, max_lost)
        return requeued

    return int(await wait_for(step, timeout=5, what="maintain to requeue the expired lease"))


async def test_nothing_to_do(calls: Calls) -> None:
    assert await calls.maintain(100, 3) == (0, 0, None)


async def test_expired_lease_is_requeued(calls: Calls) -> None:
    await register(calls, "w")
    await submit(calls, "a", "b")
    got = await claim_job(calls, "w", lease_ms=50)
    assert got.id == "a"
    assert await requeued_by_maintain(calls) == 1
    h = await job_hash(calls, "a")
    assert h["status"] == "pending" and h["lost"] == "1" and "tries" not in h and "worker_id" not in h
    hist = json.loads(h["history"])
    assert len(hist) == 1
    assert hist[0]["outcome"] == "lease_expired" and hist[0]["worker_id"] == "w" and hist[0]["attempt"] == 1
    assert await calls.client.zscore(calls.keys.leases, "a") is None
    ev = (await events(calls, "job_requeued"))[0]
    assert (ev["job"], ev["worker"], ev["attempt"]) == ("a", "w", "1")
    assert json.loads(ev["data"]) == {"reason": "lease_expired", "lost": 1}
    assert [e["type"] for e in await job_events(calls, "a")] == ["job_started", "job_requeued"]
    w = await calls.client.hgetall(calls.keys.worker("w"))
    assert w["status"] == "idle" and w["job"] == ""
    # Requeued to its place: ahead of b.
    assert (await claim_job(calls, "w")).id == "a"
    # Idempotent: the lease is requeued once.
    assert (await calls.maintain(100, 3))[1] == 0


async def test_max_lost_leases_fails_the_job_as_worker_lost(calls: Calls) -> None:
    await register(calls, "w")
    await submit(calls, "poison")
    await claim_job(calls, "w", lease_ms=50)
    assert await requeued_by_maintain(calls, max_lost=2) == 1
    assert (await job_hash(calls, "poison"))["status"] == "pending"
    await claim_job(calls, "w", lease_ms=50)
    assert await requeued_by_maintain(calls, max_lost=2) == 1
    h = await job_hash(calls, "poison")
    assert h["status"] == "failed" and h["failure_class"] == "worker_lost" and h["lost"] == "2"
    assert len(json.loads(h["history"])) == 2
    assert await calls.client.zscore(calls.keys.done("failed"), "poison") is not None
    ev = (await events(calls, "job_failed"))[0]
    assert json.loads(ev["data"]) == {"failure_class": "worker_lost", "lost": 2}


async def test_a_stale_workers_complete_after_requeue_is_refused(calls: Calls) -> None:
    await register(calls, "slow")
    await register(calls, "w2")
    await submit(calls, "a")
    old = await claim_job(calls, "slow", lease_ms=50)
    await requeued_by_maintain(calls)
    assert (await calls.complete("a", old.attempt, "slow", '{"late":true}')).code == OutcomeCode.STALE
    assert (await job_hash(calls, "a"))["status"] == "pending"
    new = await claim_job(calls, "w2")
    assert (await calls.complete("a", old.attempt, "slow")).code == OutcomeCode.STALE
    outcome = await calls.complete("a", new.attempt, "w2")
    assert outcome.code == "OK"
    assert "result" not in await job_hash(calls, "a")


async def test_a_heartbeat_keeps_the_lease_from_expiring(calls: Calls) -> None:
    await register(calls, "w")
    await submit(calls, "a")
    got = await claim_job(calls, "w", lease_ms=50)
    await calls.heartbeat("w", 60_000, 60_000, [("a", got.attempt)])
    deadline = await calls.client.zscore(calls.keys.leases, "a")
    assert deadline > await server_ms(calls) + 50_000
    assert (await calls.maintain(100, 3))[1] == 0
    assert (await job_hash(calls, "a"))["status"] == "in_progress"


async def test_due_scheduled_job_is_promoted(calls: Calls) -> None:
    await register(calls, "w")
    run_at = await server_ms(calls) + 150
    await submit(calls, {"id": "soon", "run_at": run_at}, {"id": "much-later", "run_at": run_at + 3_600_000})
    promoted, requeued, nxt = await calls.maintain(100, 3)
    if await server_ms(calls) < run_at:  # (a very slow machine may already be past it)
        assert (promoted, requeued) == (0, 0) and nxt == run_at

    async def step() -> int:
        return (await calls.maintain(100, 3))[0]

    assert await wait_for(step, what="the scheduled job to fall due") == 1
    h = await job_hash(calls, "soon")
    assert h["status"] == "pending" and "run_at" not in h
    assert await calls.client.zscore(calls.keys.scheduled, "soon") is None
    assert (await job_hash(calls, "much-later"))["status"] == "scheduled"
    ev = [e for e in await job_events(calls, "soon")][-1]
    assert ev["type"] == "job_requeued" and json.loads(ev["data"]) == {"from": "scheduled"}
    assert (await claim_job(calls, "w")).id == "soon"


async def test_page_bounds_the_work_of_one_call_and_the_counts_are_true(calls: Calls) -> None:
    """Regression (maintain.lua called housekeep() after its own pages only to learn the next due
    time, but housekeep() promotes / requeues up to MAINTENANCE_PAGE more when due): one call did up
    to page + 100 of each, and reported only the first page (2 promoted while all 5 were)."""
    run_at = await server_ms(calls) + 30
    await submit(calls, *[{"id": f"s{i}", "run_at": run_at} for i in range(5)])

    async def first_page() -> int:
        return (await calls.maintain(2, 3))[0]

    reported = await wait_for(first_page)
    still_scheduled = await calls.client.zcard(calls.keys.scheduled)
    pending = sum([(await job_hash(calls, f"s{i}"))["status"] == "pending" for i in range(5)])
    assert pending == reported, f"emp_maintain reported {reported} promoted, {pending} jobs were promoted"
    assert reported == 2 and still_scheduled == 3, "one call promotes at most one page"
