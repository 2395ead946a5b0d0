"""A stale leader's sweeps are refused by the Functions themselves and write nothing.

Leader "old" held the lease with token 1, stalled past it, and "new" took over with token 2. Every
fenced sweep "old" makes now is refused with NotLeader, whatever there is to do; the same call with
the current token, or with no fence at all (workers, emp demo), goes through.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from emp.redis.calls import Calls, Fence, LeaderLease, NotLeader, UpkeepCalls, leader_acquire
from tests.redis.helpers import (
    SERVICE,
    UNWORKABLE_REQ,
    UNWORKABLE_SIG,
    claim_job,
    namespace_keys,
    register,
    server_clock_past,
    submit,
)

pytestmark = pytest.mark.anyio


async def takeover(calls: Calls) -> tuple[Fence, Fence]:
    old = await leader_acquire(calls, "upkeep", "old", 30)
    assert isinstance(old, LeaderLease)
    await server_clock_past(calls, old.expires_ms)
    new = await leader_acquire(calls, "upkeep", "new", 60_000)
    assert isinstance(new, LeaderLease) and new.token > old.token
    return Fence("upkeep", old.token), Fence("upkeep", new.token)


async def everything(calls: Calls) -> dict[str, Any]:
    """Every key of the namespace with its content (the lease aside): what a refusal must not change."""
    out: dict[str, Any] = {}
    for key in sorted(await namespace_keys(calls)):
        if key in (calls.keys.leader("upkeep"), calls.keys.leader_token("upkeep")):
            continue
        kind = await calls.client.type(key)
        if kind == "hash":
            out[key] = await calls.client.hgetall(key)
        elif kind == "zset":
            out[key] = await calls.client.zrange(key, 0, -1, withscores=True)
        elif kind == "stream":
            out[key] = await calls.client.xrange(key)
        elif kind == "set":
            out[key] = sorted(await calls.client.smembers(key))
        else:
            out[key] = await calls.client.get(key) if kind == "string" else kind
    return out


async def work_for_every_sweep(calls: Calls) -> None:
    """Something for each sweep to do: an expired lease, a lapsed worker and machine, an old ended
    job (retention 0), an unworkable signature to mark and a flagged one to revive."""
    await register(calls, "dead", ttl_ms=60_000)
    await submit(calls, "ended")
    await submit(calls, "leased")
    ended = await claim_job(calls, "dead")
    assert ended.id == "ended"
    await calls.complete("ended", ended.attempt, "dead")
    assert (await claim_job(calls, "dead", lease_ms=1)).id == "leased"  # the last claim: nothing requeues it
    await submit(calls, {"id": "u", "requirements": UNWORKABLE_REQ})
    await calls.machine_report("gone", 1, {})
    await register(calls, "lapsing", ttl_ms=1)
    deadlines = [
        await calls.client.zscore(calls.keys.leases, "leased"),
        await calls.client.zscore(calls.keys.workers, "lapsing"),
        await calls.client.zscore(calls.keys.machines, "gone"),
    ]
    await server_clock_past(calls, max(d or 0 for d in deadlines))


SWEEPS: dict[str, Callable[[UpkeepCalls], Awaitable[object]]] = {
    "maintain": lambda c: c.maintain(100, 3),
    "cleanup": lambda c: c.cleanup(100),
    "machines_offline": lambda c: c.machines_offline(100),
    "mark_unworkable": lambda c: c.mark_unworkable(SERVICE, UNWORKABLE_SIG, 0, 100),
    "revive_unworkable": lambda c: c.revive_unworkable(SERVICE, UNWORKABLE_SIG, 100),
    "retire_signatures": lambda c: c.retire_signatures(0),
}


@pytest.mark.parametrize("sweep", sorted(SWEEPS))
async def test_a_stale_leaders_sweep_is_refused_and_writes_nothing(calls: Calls, sweep: str) -> None:
    await work_for_every_sweep(calls)
    old, new = await takeover(calls)
    if sweep == "revive_unworkable":
        await calls.mark_unworkable(SERVICE, UNWORKABLE_SIG, 0)
    before = await everything(calls)
    with pytest.raises(NotLeader) as info:
        await SWEEPS[sweep](UpkeepCalls(calls, old, retention_ms=0))
    assert info.value.token == old.token and str(new.token) in str(info.value)
    assert await everything(calls) == before
    await SWEEPS[sweep](UpkeepCalls(calls, new, retention_ms=0))  # the current leader's goes through


async def test_an_expired_lease_cannot_sweep_even_when_nobody_took_over(calls: Calls) -> None:
    lease = await leader_acquire(calls, "upkeep", "alone", 30)
    assert isinstance(lease, LeaderLease)
    await server_clock_past(calls, lease.expires_ms)
    with pytest.raises(NotLeader):
        await UpkeepCalls(calls, Fence("upkeep", lease.token)).maintain(100, 3)


async def test_a_fence_for_a_role_nobody_holds_is_refused(calls: Calls) -> None:
    with pytest.raises(NotLeader):
        await UpkeepCalls(calls, Fence("upkeep", 1)).cleanup(100)


async def test_unfenced_sweeps_still_work_for_everyone(calls: Calls) -> None:
    """Workers and emp demo sweep without a lease (maintenance_loop): old callers are unchanged."""
    await work_for_every_sweep(calls)
    await takeover(calls)
    promoted, requeued, _ = await calls.maintain(100, 3)
    assert requeued == 1
    assert (await calls.cleanup(100))[1] == 1, "the lapsed worker"
    assert await UpkeepCalls(calls).machines_offline(100) == 1
