"""The leader's upkeep (emp/coordinator/upkeep.py) against the real redis-server: sweeps that a
crash cannot spoil, retention in pages, silent machines, and recovery with no coordinator at all."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import anyio
import pytest

from emp import defaults
from emp.coordinator.leader import LeaderElection
from emp.coordinator.lease_policy import LeasePolicy
from emp.coordinator.upkeep import UpkeepReport, run_upkeep_pass, upkeep_loop
from emp.redis.calls import Calls, ClaimedJob, Fence, LeaderLease, UpkeepCalls, leader_acquire
from tests.polling import wait_for
from tests.redis.helpers import (
    SERVICE,
    UNWORKABLE_REQ,
    claim,
    claim_job,
    events,
    job_hash,
    register,
    server_clock_past,
    server_ms,
    submit,
)

pytestmark = pytest.mark.anyio


class Crash(Exception):
    """The coordinator died right after a Function call returned."""


class CrashingCalls(UpkeepCalls):
    """Fenced upkeep calls whose process dies after ``calls_before_crash`` Function calls."""

    def __init__(self, calls: Calls, fence: Fence, calls_before_crash: int) -> None:
        super().__init__(calls, fence)
        self.left = calls_before_crash

    async def _fcall(self, name: str, keys: Any, *args: Any, ro: bool = False) -> Any:
        reply = await super()._fcall(name, keys, *args, ro=ro)
        self.left -= 1
        if self.left <= 0:
            raise Crash(name)
        return reply


async def lead(calls: Calls, holder: str) -> Fence:
    got = await leader_acquire(calls, "upkeep", holder, 60_000)
    assert isinstance(got, LeaderLease), got
    return Fence("upkeep", got.token)


async def dead_workers_holding(calls: Calls, n: int, lease_ms: int) -> list[str]:
    """``n`` jobs, each claimed by its own worker that then dies (it never heartbeats); waits until
    every lease has expired on the server's clock. Returns the job ids."""
    ids = [f"j{i}" for i in range(n)]
    await submit(calls, *ids)
    for i in range(n):
        await register(calls, f"w{i}")
        got = await claim_job(calls, f"w{i}", lease_ms=lease_ms)
        assert got.attempt == 1
    leases = await calls.client.zrange(calls.keys.leases, 0, -1, withscores=True)
    assert sorted(m for m, _ in leases) == sorted(ids), "every job leased once, none requeued yet"
    await server_clock_past(calls, max(s for _, s in leases))
    return ids


async def requeue_counts(calls: Calls) -> Counter[str]:
    return Counter(e["job"] for e in await events(calls, "job_requeued") if "lease_expired" in e.get("data", ""))


async def test_a_pass_killed_midway_and_run_again_loses_nothing(calls: Calls) -> None:
    ids = await dead_workers_holding(calls, 30, lease_ms=1000)
    at = await server_ms(calls) + 20
    scheduled = [f"s{i}" for i in range(15)]
    assert set(await submit(calls, *scheduled, run_at=at)) == {"scheduled"}
    await server_clock_past(calls, at)

    first = CrashingCalls(calls, await lead(calls, "first"), calls_before_crash=1)
    with pytest.raises(Crash, match="emp_maintain"):
        await run_upkeep_pass(first, page=10)
    assert await calls.client.zcard(calls.keys.leases) == 20, "one page of 10 was requeued, then the crash"
    assert await calls.client.zcard(calls.keys.scheduled) == 5

    await calls.client.delete(calls.keys.leader("upkeep"))  # its lease lapses; the next leader takes over
    second = UpkeepCalls(calls, await lead(calls, "second"))
    report = await run_upkeep_pass(second, page=10)
    assert (report.requeued, report.promoted) == (20, 5)
    assert await calls.client.zcard(calls.keys.leases) == 0 and await calls.client.zcard(calls.keys.scheduled) == 0
    for job_id in ids + scheduled:
        assert (await job_hash(calls, job_id))["status"] == "pending", job_id
    for job_id in ids:
        assert (await job_hash(calls, job_id))["lost"] == "1", job_id
    assert await requeue_counts(calls) == Counter({j: 1 for j in ids}), "every expired attempt requeued exactly once"
    queued = await calls.client.zrange(calls.keys.queue(SERVICE, (await job_hash(calls, "j0"))["sig"]), 0, -1)
    assert sorted(m[13:] for m in queued) == sorted(ids + scheduled)
    again = await run_upkeep_pass(second, page=10)
    assert (again.requeued, again.promoted) == (0, 0), "idempotent"


async def complete_jobs(calls: Calls, n: int) -> list[str]:
    ids = [f"d{i:02d}" for i in range(n)]
    await submit(calls, *ids)
    await register(calls, "w")
    for _ in ids:
        got = await claim(calls, "w")
        assert isinstance(got, ClaimedJob)
        await calls.complete(got.id, got.attempt, "w", result='{"ok":true}')
    return ids


async def test_retention_trims_the_index_in_pages_and_deletes_what_it_trims(calls: Calls) -> None:
    ids = await complete_jobs(calls, 25)
    done = calls.keys.done("completed")
    newest = max(s for _, s in await calls.client.zrange(done, 0, -1, withscores=True))
    await server_clock_past(calls, newest)

    kept = UpkeepCalls(calls, retention_ms=3_600_000)
    assert await kept.cleanup(10) == (0, 0), "younger than the retention: kept"
    assert await calls.cleanup(10) == (0, 0), "the library's default retention (7 days) keeps them too"

    short = UpkeepCalls(calls, retention_ms=0)
    assert [(await short.cleanup(10))[0] for _ in range(4)] == [10, 10, 5, 0]
    assert await calls.client.zcard(done) == 0
    for job_id in ids:
        for key in (calls.keys.job(job_id), calls.keys.payload(job_id), calls.keys.job_events(job_id)):
            assert not await calls.client.exists(key), key
    assert await calls.get_job(ids[0]) is None
    rows, _ = await calls.list_jobs(status="completed")
    assert rows == []


async def test_retention_spares_a_job_retried_since_it_ended(calls: Calls) -> None:
    await register(calls, "w")
    await submit(calls, "a")
    got = await claim_job(calls, "w")
    await calls.fail("a", got.attempt, "w", "malformed", "bad input", 0.0)
    assert (await job_hash(calls, "a"))["status"] == "failed"
    await calls.retry("a")
    assert await UpkeepCalls(calls, retention_ms=0).cleanup(100) == (0, 0)
    assert (await job_hash(calls, "a"))["status"] == "pending"


async def test_a_pass_trims_every_page_within_its_bound(calls: Calls) -> None:
    await complete_jobs(calls, 25)
    newest = max(s for _, s in await calls.client.zrange(calls.keys.done("completed"), 0, -1, withscores=True))
    await server_clock_past(calls, newest)
    report = await run_upkeep_pass(UpkeepCalls(calls, await lead(calls, "a"), retention_ms=0), page=10)
    assert report.trimmed == 25 and await calls.client.zcard(calls.keys.done("completed")) == 0


async def test_a_pass_marks_silent_workers_and_machines_offline(calls: Calls) -> None:
    await calls.machine_report("gone", 50, {"status": "ready"})
    await calls.machine_report("alive", 60_000, {"status": "ready"})
    await register(calls, "silent", ttl_ms=50)
    await register(calls, "talking", ttl_ms=60_000)
    fenced = UpkeepCalls(calls, await lead(calls, "a"))
    reports: list[UpkeepReport] = []

    async def swept() -> bool:
        reports.append(await run_upkeep_pass(fenced, slow=False))
        return sum(r.machines_offline for r in reports) == 1 and sum(r.workers_offline for r in reports) == 1

    await wait_for(swept, what="the silent worker and machine to be marked offline")
    assert (await calls.client.hgetall(calls.keys.machine("gone")))["status"] == "offline"
    assert (await calls.client.hgetall(calls.keys.worker("silent")))["status"] == "offline"
    assert [m["id"] for m in await calls.list_machines()] == ["alive"]
    assert [w.id for w in await calls.live_workers()] == ["talking"]
    shutdown = await events(calls, "machine_shutdown")
    assert [(e["machine"], json.loads(e["data"])["reason"]) for e in shutdown] == [("gone", "report lapsed")]


async def test_unworkable_jobs_are_marked_then_revived_when_a_matching_worker_registers(calls: Calls) -> None:
    await register(calls, "small")
    n = defaults.UNWORKABLE_PAGE + 1  # registration revives one page itself; the pass revives the rest
    ids = [f"big{i}" for i in range(n)]
    await submit(calls, *[{"id": i, "requirements": UNWORKABLE_REQ} for i in ids])
    fenced = UpkeepCalls(calls, await lead(calls, "a"))
    report = await run_upkeep_pass(fenced, grace_s=0, page=100)
    assert report.marked_unworkable == n
    assert {(await job_hash(calls, i))["status"] for i in ids} == {"unworkable"}
    big_caps = {"hardware": {"gpu_model": "H100", "gpu_memory_gb": 80, "ram_gb": 256, "cpu_cores": 32}}
    await register(calls, "big-gpu", caps=big_caps)
    report = await run_upkeep_pass(fenced, grace_s=0, page=100)
    assert report.revived == 1 and report.marked_unworkable == 0
    assert {(await job_hash(calls, i))["status"] for i in ids} == {"pending"}
    assert (await claim_job(calls, "big-gpu")).id == ids[0]


async def test_without_any_coordinator_workers_still_recover_expired_leases(calls: Calls) -> None:
    """No upkeep runs here: the claim of a live worker requeues the dead worker's job (_housekeeping.lua)."""
    await register(calls, "dies")
    await submit(calls, "a")
    first = await claim_job(calls, "dies", lease_ms=50)
    await register(calls, "lives")

    async def recovered() -> ClaimedJob | None:
        got = await claim(calls, "lives")
        return got if isinstance(got, ClaimedJob) else None

    second = await wait_for(recovered, what="the live worker to get the expired job")
    assert second.id == "a" and second.attempt == first.attempt + 1
    assert await requeue_counts(calls) == Counter({"a": 1})


async def test_two_coordinators_with_the_leader_killed_requeue_every_expired_attempt_once(calls: Calls) -> None:
    policy = LeasePolicy(lease_s=1.0, acquire_every_s=0.05)
    elections = [LeaderElection(calls, holder=name, policy=policy) for name in ("c1", "c2")]
    scopes: dict[str, anyio.CancelScope] = {}
    stop = anyio.Event()

    async def coordinator(election: LeaderElection) -> None:
        with anyio.CancelScope() as scopes[election.holder]:
            await upkeep_loop(calls, stop=stop, interval_s=0.05, election=election, grace_s=0)

    async with anyio.create_task_group() as tg:
        for e in elections:
            tg.start_soon(coordinator, e)

        async def leader() -> LeaderElection | None:
            return next((e for e in elections if e.is_leader), None)

        first: LeaderElection = await wait_for(leader, what="a leader")
        ids = await dead_workers_holding(calls, 20, lease_ms=300)
        scopes[first.holder].cancel()  # killed: whatever it did not sweep is the other's to do
        survivor = next(e for e in elections if e is not first)

        async def all_requeued() -> bool:
            return sum((await requeue_counts(calls)).values()) >= len(ids)

        await wait_for(all_requeued, timeout=5, what="every expired lease requeued")
        stop.set()
    assert await requeue_counts(calls) == Counter({j: 1 for j in ids})
    assert await calls.client.zcard(calls.keys.leases) == 0
    assert survivor.terms >= 1, "the survivor led"
