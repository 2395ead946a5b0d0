"""emp_schedule_fire: an occurrence's job is submitted once, like emp_submit's, and the schedule moves on
in the same call; replays, stale plans, paused and removed schedules submit nothing; fenced."""

from __future__ import annotations

import json

import pytest

from emp.errors import JobValidationError
from emp.redis.calls import Calls, Fence, LeaderLease, NotLeader, UpkeepCalls, leader_acquire
from tests.redis.helpers import claim_job, events, job_hash, queue_ids, register, server_ms, submit, wire
from tests.schedules.helpers import add, schedule, template

pytestmark = pytest.mark.anyio


async def test_fire_submits_the_occurrence_once_and_moves_the_schedule(calls: Calls) -> None:
    assert await add(calls, "s", next_ms=1000)
    assert await calls.schedule_fire("s", expected_next=1000, occurrence=1000, next_ms=2000) == (
        "OK",
        "pending",
        "sched:s:1000",
    )
    row = await schedule(calls, "s")
    assert (row["next_ms"], row["last_fired"], row["last_job"], row["fired"]) == ("2000", "1000", "sched:s:1000", "1")
    assert row["last_status"] == "pending"
    assert await calls.client.zscore(calls.keys.schedules_due, "s") == 2000
    assert await queue_ids(calls) == ["sched:s:1000"]
    # The same plan again (a replay, a second coordinator that read the schedule before): refused.
    assert await calls.schedule_fire("s", expected_next=1000, occurrence=1000, next_ms=2000) == ("MOVED", "2000")
    # A plan from the new next_ms but for an occurrence already fired: not submitted again.
    assert (await calls.schedule_fire("s", expected_next=2000, occurrence=1000, next_ms=3000))[1] == "already"
    assert await queue_ids(calls) == ["sched:s:1000"]
    submitted = await events(calls, "job_submitted")
    assert len(submitted) == 1
    data = json.loads(submitted[0]["data"])
    assert data == {"service": "comfyui", "priority": 50, "schedule": "s", "occurrence": 1000}


async def test_a_job_with_the_occurrence_id_is_never_submitted_twice(calls: Calls) -> None:
    """last_fired lost (a schedule removed and added again): the id still refuses the replay."""
    assert await add(calls, "s", next_ms=1000)
    await calls.schedule_fire("s", expected_next=1000, occurrence=1000, next_ms=2000)
    await calls.schedule_remove("s")
    assert await add(calls, "s", next_ms=1000)
    assert await calls.schedule_fire("s", expected_next=1000, occurrence=1000, next_ms=2000) == (
        "OK",
        "exists",
        "sched:s:1000",
    )
    assert len(await events(calls, "job_submitted")) == 1
    assert (await schedule(calls, "s"))["next_ms"] == "2000", "the schedule moves on all the same"


async def test_the_fired_job_is_the_job_emp_submit_makes(calls: Calls) -> None:
    fields = {
        "payload": {"p": [1, 2]},
        "priority": 80,
        "requirements": {"pool": "standard"},
        "customer_id": "c1",
        "workflow_id": "wf",
        "max_attempts": 5,
        "timeout_s": 12.5,
        "step": 1,
        "total_steps": 3,
    }
    await submit(calls, {"id": "plain", **fields})
    assert await add(calls, "s", next_ms=1000, tpl=template(**fields))
    await calls.schedule_fire("s", expected_next=1000, occurrence=1000, next_ms=2000)
    plain, fired = await job_hash(calls, "plain"), await job_hash(calls, "sched:s:1000")
    ignore = {"created_at", "seq"}
    assert {k: v for k, v in fired.items() if k not in ignore | {"schedule", "occurrence"}} == {
        k: v for k, v in plain.items() if k not in ignore
    }
    assert fired["schedule"] == "s" and fired["occurrence"] == "1000"
    assert await calls.client.get(calls.keys.payload("sched:s:1000")) == wire("x", **fields)["payload"]
    await register(calls, "w1")
    assert (await claim_job(calls, "w1")).id == "plain", "same priority and order rules: submitted first"
    got = await claim_job(calls, "w1")
    assert got.id == "sched:s:1000" and got.payload == {"p": [1, 2]} and got.max_attempts == 5


async def test_skipping_missed_occurrences_fires_nothing_and_counts_them(calls: Calls) -> None:
    assert await add(calls, "s", next_ms=1000)
    assert await calls.schedule_fire("s", expected_next=1000, occurrence=None, next_ms=50_000, skipped=49) == (
        "OK",
        "none",
        "",
    )
    row = await schedule(calls, "s")
    assert row["skipped"] == "49" and row["next_ms"] == "50000" and "last_fired" not in row
    assert await queue_ids(calls) == []


async def test_run_now_submits_a_job_without_moving_the_schedule(calls: Calls) -> None:
    assert await add(calls, "s", next_ms=10**12, paused=True)
    ok, outcome, job = await calls.schedule_fire("s", now=True)
    assert (ok, outcome) == ("OK", "pending") and job.startswith("sched:s:now-")
    row = await schedule(calls, "s")
    assert row["next_ms"] == str(10**12) and row["last_job"] == job and "last_fired" not in row
    assert row["paused"] == "1"


async def test_gone_and_bad_arguments(calls: Calls) -> None:
    assert await calls.schedule_fire("nope", expected_next=1, occurrence=1, next_ms=2) == ("GONE",)
    assert await calls.schedule_fire("nope", now=True) == ("GONE",)
    assert await add(calls, "s", next_ms=1000)
    with pytest.raises(JobValidationError, match="epoch ms"):
        await calls._fcall(
            "emp_schedule_fire", [calls.keys.schedules_due], calls.p, "s", "due", "1000", "x", "2000", "0", "1", "", ""
        )
    assert (await schedule(calls, "s"))["next_ms"] == "1000"


async def test_an_unworkable_signature_makes_an_unworkable_job(calls: Calls) -> None:
    tpl = template(requirements={"pool": "nowhere"})
    assert await add(calls, "s", next_ms=1000, tpl=tpl)
    await submit(calls, {"id": "probe", "requirements": {"pool": "nowhere"}})
    sig = (await job_hash(calls, "probe"))["sig"]
    await calls.client.hset(calls.keys.usigs("comfyui"), sig, '{"pool":"nowhere"}')
    assert (await calls.schedule_fire("s", expected_next=1000, occurrence=1000, next_ms=2000))[1] == "unworkable"
    assert (await job_hash(calls, "sched:s:1000"))["status"] == "unworkable"
    assert len(await events(calls, "job_unworkable", "sched:s:1000")) == 1


async def test_a_stale_leader_is_refused_and_writes_nothing(calls: Calls) -> None:
    now = await server_ms(calls)
    assert await add(calls, "s", next_ms=now)
    lease = await leader_acquire(calls, "upkeep", "a", 60_000)
    assert isinstance(lease, LeaderLease)
    stale = UpkeepCalls(calls, Fence("upkeep", lease.token + 1))
    with pytest.raises(NotLeader):
        await stale.schedule_fire("s", expected_next=now, occurrence=now, next_ms=now + 1000, fence=stale.fence)
    assert (await schedule(calls, "s"))["next_ms"] == str(now) and await queue_ids(calls) == []
    good = UpkeepCalls(calls, Fence("upkeep", lease.token))
    reply = await good.schedule_fire("s", expected_next=now, occurrence=now, next_ms=now + 1000, fence=good.fence)
    assert reply[1] == "pending"
