"""Stall grace (_housekeeping.lua, HK.*): when Redis heard no heartbeat for longer than half the
lease heartbeating lately, the silence is judged (once) a stall of Redis, and the leases that lapsed
in it get the time they had left back before any sweep requeues them.

A stall is made here by writing an old heartbeat note: to the Functions that is the same as Redis
having been stopped since then (a real SIGSTOP is tests/chaos/test_redis_freeze.py).
"""

from __future__ import annotations

import pytest

from emp import defaults
from emp.redis.calls import Calls, NoJob
from tests.polling import wait_for
from tests.redis.helpers import claim, claim_job, events, register, server_ms, submit

pytestmark = pytest.mark.anyio

LEASE_MS = 2000
"""The lease of the (simulated) last heartbeat: a silence over half of it is a stall."""
GAP_MS = 1500
"""The simulated silence: over half the lease, short enough to wait out in a test."""


async def heard(calls: Calls, ms_ago: int, lease_ms: int = LEASE_MS, judged: int = 0) -> int:
    """Write the note of a heartbeat ``ms_ago`` ms ago; the server ms now."""
    now = await server_ms(calls)
    await calls.client.set(calls.keys.clock, f"{now - ms_ago}:{lease_ms}:{judged}")
    return now


async def note(calls: Calls) -> tuple[int, int, int]:
    at, lease, judged = str(await calls.client.get(calls.keys.clock)).split(":")
    return int(at), int(lease), int(judged)


async def stall_record(calls: Calls) -> tuple[int, int] | None:
    raw = await calls.client.get(calls.keys.stall)
    if raw is None:
        return None
    wake, gap = str(raw).split(":")
    return int(wake), int(gap)


async def lapsed_lease(calls: Calls, job_id: str = "a") -> int:
    """A job claimed with a 1 ms lease: lapsed by the time anything else runs. Its deadline."""
    await register(calls, "w")
    await submit(calls, job_id)
    await claim_job(calls, "w", lease_ms=1)
    score = await calls.client.zscore(calls.keys.leases, job_id)
    assert score is not None
    await wait_for(lambda: _later(calls, int(score)), timeout=5, what="the lease to lapse")
    return int(score)


async def _later(calls: Calls, ms: int) -> bool:
    return await server_ms(calls) > ms


async def requeued_now(calls: Calls) -> int:
    return (await calls.maintain(100, 3))[1]


async def test_a_lease_that_lapsed_during_a_stall_waits_out_the_gap(calls: Calls) -> None:
    deadline = await lapsed_lease(calls)
    await heard(calls, GAP_MS)
    promoted, requeued, next_due = await calls.maintain(100, 3)
    assert requeued == 0
    record = await stall_record(calls)
    assert record is not None and GAP_MS <= record[1] <= GAP_MS + 1000, record
    assert next_due == deadline + record[1]  # what maintain tells its caller: when to look again
    assert (await note(calls))[2] == 1  # judged: the same silence is not judged again

    assert await wait_for(lambda: requeued_now(calls), timeout=10, what="the lease to expire after its grace") == 1
    [ev] = await events(calls, "job_requeued")
    assert int(ev["ts"]) >= deadline + record[1], (ev, deadline, record)


async def test_without_heartbeats_there_is_no_stall(calls: Calls) -> None:
    """Workers that claimed and died before their first heartbeat: nothing to judge, requeued at once."""
    await lapsed_lease(calls)
    assert await calls.client.get(calls.keys.clock) is None  # claims leave no note
    assert await requeued_now(calls) == 1
    assert await stall_record(calls) is None


async def test_a_silence_shorter_than_half_the_lease_is_no_stall(calls: Calls) -> None:
    await lapsed_lease(calls)
    await heard(calls, LEASE_MS // 4)
    assert await requeued_now(calls) == 1
    assert await stall_record(calls) is None


async def test_a_silence_is_judged_once(calls: Calls) -> None:
    """A fleet that died: its silence is judged half a lease after the last heartbeat, once; later
    sweeps do not judge it again, so leases lapsing after the judgement are requeued at once."""
    await heard(calls, GAP_MS)
    assert await requeued_now(calls) == 0 and await stall_record(calls) is not None
    await calls.client.delete(calls.keys.stall)
    await lapsed_lease(calls)
    assert await requeued_now(calls) == 1
    assert await stall_record(calls) is None


async def test_a_heartbeat_judges_and_its_own_lease_runs_as_usual(calls: Calls) -> None:
    """The first call after the wake may be a heartbeat: it judges the silence, leaves a fresh note,
    and the lease it renews (a deadline after the wake) expires by its own deadline, no grace added."""
    await lapsed_lease(calls, "a")
    await heard(calls, GAP_MS)
    registered, states = await calls.heartbeat("w", 50, 30_000, [("a", 1)])
    assert registered and states == ["ok"]
    assert await stall_record(calls) is not None
    at, lease, judged = await note(calls)
    assert (lease, judged) == (50, 0) and at > 0
    renewed = await calls.client.zscore(calls.keys.leases, "a")
    assert renewed is not None

    assert await wait_for(lambda: requeued_now(calls), timeout=5, what="the renewed lease to expire") == 1
    [ev] = await events(calls, "job_requeued")
    assert int(renewed) <= int(ev["ts"]) < int(renewed) + GAP_MS, (ev, renewed)


async def test_the_note_keeps_the_shortest_lease_heartbeating_lately(calls: Calls) -> None:
    await register(calls, "short")
    await register(calls, "long")
    await calls.heartbeat("short", LEASE_MS, 30_000)
    await calls.heartbeat("long", 30_000, 30_000)
    assert (await note(calls))[1] == LEASE_MS


async def test_a_claim_honours_the_grace_and_says_when_to_look_again(calls: Calls) -> None:
    deadline = await lapsed_lease(calls)
    await heard(calls, GAP_MS)
    await register(calls, "w2")
    got = await claim(calls, "w2")  # housekeeps: judges the silence, requeues nothing
    assert isinstance(got, NoJob), got
    record = await stall_record(calls)
    assert record is not None
    assert got.next_due_ms == deadline + record[1]
    assert await calls.client.zscore(calls.keys.leases, "a") is not None


async def test_the_grace_is_capped_and_a_second_stall_does_not_lengthen_it(calls: Calls) -> None:
    await heard(calls, 10 * defaults.STALL_GRACE_MAX_MS)
    await calls.maintain(100, 3)
    record = await stall_record(calls)
    assert record is not None and record[1] == defaults.STALL_GRACE_MAX_MS
    ttl = await calls.client.pttl(calls.keys.stall)
    assert 0 < ttl <= defaults.STALL_GRACE_MAX_MS

    await heard(calls, GAP_MS)  # another stall while the first is still granted
    await calls.maintain(100, 3)
    again = await stall_record(calls)
    assert again is not None and again[0] >= record[0]
    assert again[1] <= record[1] - (again[0] - record[0]) + 1, (record, again)  # what was left, no more
