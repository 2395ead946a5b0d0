"""emp_leader_resign: the holder gives its lease up at once; nobody else can take it away this way."""

from __future__ import annotations

import pytest

from emp.redis.calls import Calls, Fence, LeaderLease, leader_acquire, leader_resign

pytestmark = pytest.mark.anyio


async def test_the_holder_resigns_and_the_role_is_free_at_once(calls: Calls) -> None:
    lease = await leader_acquire(calls, "upkeep", "a", 60_000)
    assert isinstance(lease, LeaderLease)
    assert await leader_resign(calls, Fence("upkeep", lease.token), "a")
    assert await calls.client.exists(calls.keys.leader("upkeep")) == 0
    assert await calls.client.get(calls.keys.leader_token("upkeep")) == "1", "the counter stays"
    nxt = await leader_acquire(calls, "upkeep", "b", 60_000)
    assert isinstance(nxt, LeaderLease) and nxt.token == 2


async def test_others_cannot_resign_it(calls: Calls) -> None:
    lease = await leader_acquire(calls, "upkeep", "a", 60_000)
    assert isinstance(lease, LeaderLease)
    assert not await leader_resign(calls, Fence("upkeep", lease.token), "b")
    assert not await leader_resign(calls, Fence("upkeep", lease.token + 1), "a")
    assert (await calls.client.hgetall(calls.keys.leader("upkeep")))["holder"] == "a"
    assert not await leader_resign(calls, Fence("other", 1), "a"), "a role nobody holds"


async def test_a_bad_role_is_refused(calls: Calls) -> None:
    with pytest.raises(ValueError, match="role"):
        await leader_resign(calls, Fence("a:b", 1), "a")
