"""emp_leader_renew: only the holder of a live lease, with its token, extends it."""

from __future__ import annotations

import pytest

from emp.redis.calls import Calls, Fence, LeaderLease, leader_acquire, leader_renew
from tests.redis.helpers import server_clock_past

pytestmark = pytest.mark.anyio


async def lead(calls: Calls, holder: str = "a", ttl_ms: int = 5000) -> LeaderLease:
    got = await leader_acquire(calls, "upkeep", holder, ttl_ms)
    assert isinstance(got, LeaderLease)
    return got


async def test_the_holder_extends_its_lease(calls: Calls) -> None:
    lease = await lead(calls, ttl_ms=1000)
    expires = await leader_renew(calls, Fence("upkeep", lease.token), "a", 8000)
    assert expires is not None and expires > lease.expires_ms
    h = await calls.client.hgetall(calls.keys.leader("upkeep"))
    assert int(h["expires"]) == expires and h["token"] == str(lease.token)
    assert 1000 < await calls.client.pttl(calls.keys.leader("upkeep")) <= 8000


async def test_another_holder_or_token_is_refused_and_changes_nothing(calls: Calls) -> None:
    lease = await lead(calls)
    before = await calls.client.hgetall(calls.keys.leader("upkeep"))
    assert await leader_renew(calls, Fence("upkeep", lease.token), "b", 8000) is None
    assert await leader_renew(calls, Fence("upkeep", lease.token + 1), "a", 8000) is None
    assert await calls.client.hgetall(calls.keys.leader("upkeep")) == before


async def test_an_expired_lease_cannot_be_renewed_even_if_nobody_took_it(calls: Calls) -> None:
    lease = await lead(calls, ttl_ms=30)
    await server_clock_past(calls, lease.expires_ms)
    assert await leader_renew(calls, Fence("upkeep", lease.token), "a", 8000) is None
    assert await calls.client.exists(calls.keys.leader("upkeep")) == 0


async def test_the_old_leader_cannot_renew_after_a_takeover(calls: Calls) -> None:
    old = await lead(calls, "a", ttl_ms=30)
    await server_clock_past(calls, old.expires_ms)
    new = await lead(calls, "b")
    assert await leader_renew(calls, Fence("upkeep", old.token), "a", 8000) is None
    assert (await calls.client.hgetall(calls.keys.leader("upkeep")))["token"] == str(new.token)


async def test_bad_arguments_are_refused(calls: Calls) -> None:
    lease = await lead(calls)
    with pytest.raises(ValueError, match="ttl_ms"):
        await leader_renew(calls, Fence("upkeep", lease.token), "a", 0)
    with pytest.raises(ValueError, match="role"):
        await leader_renew(calls, Fence("", lease.token), "a", 1000)
    assert int((await calls.client.hgetall(calls.keys.leader("upkeep")))["expires"]) == lease.expires_ms
