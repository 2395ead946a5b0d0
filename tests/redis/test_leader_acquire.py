"""emp_leader_acquire: the lease of a role goes to one holder at a time, with a token that only grows."""

from __future__ import annotations

import anyio
import pytest

from emp.redis.calls import Calls, Fence, LeaderBusy, LeaderLease, leader_acquire, leader_resign
from tests.redis.helpers import server_clock_past, server_ms

pytestmark = pytest.mark.anyio


async def test_a_free_role_is_taken_with_token_1(calls: Calls) -> None:
    before = await server_ms(calls)
    got = await leader_acquire(calls, "upkeep", "a", 5000)
    assert isinstance(got, LeaderLease) and got.token == 1
    assert before + 5000 <= got.expires_ms <= before + 5000 + 1000
    h = await calls.client.hgetall(calls.keys.leader("upkeep"))
    assert h["holder"] == "a" and h["token"] == "1" and int(h["expires"]) == got.expires_ms
    assert 0 < await calls.client.pttl(calls.keys.leader("upkeep")) <= 5000
    assert await calls.client.get(calls.keys.leader_token("upkeep")) == "1"


async def test_a_live_lease_is_busy_for_others_and_extended_for_its_holder(calls: Calls) -> None:
    first = await leader_acquire(calls, "upkeep", "a", 5000)
    assert isinstance(first, LeaderLease)
    busy = await leader_acquire(calls, "upkeep", "b", 5000)
    assert busy == LeaderBusy("a", first.token, first.expires_ms)
    again = await leader_acquire(calls, "upkeep", "a", 9000)
    assert isinstance(again, LeaderLease) and again.token == first.token, "a retried acquire keeps its token"
    assert again.expires_ms > first.expires_ms
    assert await calls.client.get(calls.keys.leader_token("upkeep")) == "1", "no token spent on a retry"


async def test_an_expired_lease_goes_to_the_next_with_a_larger_token(calls: Calls) -> None:
    first = await leader_acquire(calls, "upkeep", "a", 30)
    assert isinstance(first, LeaderLease)
    await server_clock_past(calls, first.expires_ms)
    second = await leader_acquire(calls, "upkeep", "b", 5000)
    assert isinstance(second, LeaderLease) and second.token == first.token + 1
    assert (await calls.client.hgetall(calls.keys.leader("upkeep")))["holder"] == "b"


async def test_tokens_keep_growing_after_a_resignation(calls: Calls) -> None:
    first = await leader_acquire(calls, "upkeep", "a", 5000)
    assert isinstance(first, LeaderLease)
    assert await leader_resign(calls, Fence("upkeep", first.token), "a")
    again = await leader_acquire(calls, "upkeep", "a", 5000)
    assert isinstance(again, LeaderLease) and again.token == first.token + 1


async def test_roles_are_independent(calls: Calls) -> None:
    a = await leader_acquire(calls, "upkeep", "a", 5000)
    b = await leader_acquire(calls, "stats", "b", 5000)
    assert isinstance(a, LeaderLease) and isinstance(b, LeaderLease) and a.token == b.token == 1


async def test_racing_acquires_make_exactly_one_leader(calls: Calls) -> None:
    results: list[LeaderLease | LeaderBusy] = []

    async def one(holder: str) -> None:
        results.append(await leader_acquire(calls, "upkeep", holder, 5000))

    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(one, f"h{i}")
    winners = [r for r in results if isinstance(r, LeaderLease)]
    assert len(winners) == 1 and len(results) == 20
    holder = (await calls.client.hgetall(calls.keys.leader("upkeep")))["holder"]
    assert all(r.holder == holder for r in results if isinstance(r, LeaderBusy))


@pytest.mark.parametrize(
    ("role", "holder", "ttl", "field"),
    [
        ("", "a", 5000, "role"),
        ("a:b", "a", 5000, "role"),
        ("has space", "a", 5000, "role"),
        ("x" * 65, "a", 5000, "role"),
        ("upkeep", "", 5000, "holder"),
        ("upkeep", "h" * 201, 5000, "holder"),
        ("upkeep", "a", 0, "ttl_ms"),
        ("upkeep", "a", -5, "ttl_ms"),
        ("upkeep", "a", "soon", "ttl_ms"),
        ("upkeep", "a", 1.5, "ttl_ms"),
    ],
)
async def test_bad_arguments_are_refused_and_write_nothing(
    calls: Calls, role: str, holder: str, ttl: object, field: str
) -> None:
    with pytest.raises(ValueError, match=field):
        await leader_acquire(calls, role, holder, ttl)  # type: ignore[arg-type]
    assert [k async for k in calls.client.scan_iter(match=calls.keys.prefix + "*")] == []
