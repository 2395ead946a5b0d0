"""LeaderElection against the real redis-server: one leader at a time, a fast takeover, fencing."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest

from emp.coordinator.leader import LeaderElection
from emp.coordinator.lease_policy import LeasePolicy
from emp.redis.calls import Calls, Fence
from tests.polling import wait_for

pytestmark = pytest.mark.anyio

LEASE_S = 1.0
POLICY = LeasePolicy(lease_s=LEASE_S, acquire_every_s=0.05)


class Racer:
    """One election run in its own cancel scope: cancelling it is a crash (no resignation)."""

    def __init__(self, calls: Calls, name: str) -> None:
        self.election = LeaderElection(calls, holder=name, policy=POLICY)
        self.stop = anyio.Event()
        self.scope: anyio.CancelScope | None = None
        self.done = anyio.Event()

    async def run(self) -> None:
        try:
            with anyio.CancelScope() as self.scope:
                await self.election.run(stop=self.stop)
        finally:
            self.done.set()

    def kill(self) -> None:
        assert self.scope is not None
        self.scope.cancel()


@asynccontextmanager
async def racing(calls: Calls, *names: str) -> AsyncIterator[list[Racer]]:
    racers = [Racer(calls, n) for n in names]
    async with anyio.create_task_group() as tg:
        for r in racers:
            tg.start_soon(r.run)
        try:
            yield racers
        finally:
            for r in racers:
                r.stop.set()


async def one_leader(racers: list[Racer]) -> Racer:
    async def leaders() -> list[Racer]:
        return [r for r in racers if r.election.is_leader]

    found = await wait_for(leaders, timeout=LEASE_S + 2, what="a leader")
    assert len(found) == 1, [r.election.holder for r in found]
    return found[0]


async def test_racing_elections_make_exactly_one_leader(calls: Calls) -> None:
    async with racing(calls, "a", "b", "c") as racers:
        leader = await one_leader(racers)

        async def all_tried() -> bool:
            return all(r is leader or r.election.last_busy is not None for r in racers)

        await wait_for(all_tried, what="every follower to have been refused once")
        assert [r for r in racers if r.election.is_leader] == [leader]
        h = await calls.client.hgetall(calls.keys.leader("upkeep"))
        assert h["holder"] == leader.election.holder and int(h["token"]) == leader.election.token
        for r in racers:
            if r is not leader:
                assert r.election.last_busy is not None and r.election.last_busy.holder == leader.election.holder


async def test_a_dead_leader_is_replaced_within_the_lease_and_a_second(calls: Calls) -> None:
    async with racing(calls, "a", "b") as racers:
        leader = await one_leader(racers)
        old_token = leader.election.token
        assert old_token is not None
        leader.kill()  # no renewal, no resignation: as if the process died
        await leader.done.wait()
        killed_at = time.monotonic()
        other = next(r for r in racers if r is not leader)

        async def took_over() -> bool:
            return other.election.is_leader

        await wait_for(took_over, timeout=LEASE_S + 1, what="the other coordinator to take over")
        assert other.election.token is not None and other.election.token > old_token
        assert time.monotonic() - killed_at <= LEASE_S + 1
        assert (await calls.client.hgetall(calls.keys.leader("upkeep")))["holder"] == other.election.holder


async def test_a_graceful_stop_resigns_so_the_other_takes_over_at_once(calls: Calls) -> None:
    async with racing(calls, "a", "b") as racers:
        leader = await one_leader(racers)
        leader.stop.set()
        await leader.done.wait()
        assert not leader.election.is_leader
        other = next(r for r in racers if r is not leader)

        async def took_over() -> bool:
            return other.election.is_leader

        # Well within the lease: the resignation freed the role, the next attempt (50 ms) takes it.
        await wait_for(took_over, timeout=LEASE_S / 2, what="a takeover after the resignation")


async def test_a_leader_whose_lease_was_taken_steps_down_and_its_work_stops(calls: Calls) -> None:
    """The lease vanishes under the leader (as after a long pause): the next renewal fails, the
    leader steps down and its work is cancelled before another process can have the lease."""
    started: list[int] = []
    cancelled = anyio.Event()

    async def work(fence: Fence) -> None:
        started.append(fence.token)
        try:
            await anyio.sleep_forever()
        finally:
            if len(started) == 1:
                cancelled.set()

    election = LeaderElection(calls, holder="a", policy=POLICY)
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: election.run(stop=stop, body=work))

        async def leading() -> bool:
            return bool(started)

        await wait_for(leading, what="the work to start")
        await calls.client.delete(calls.keys.leader("upkeep"))  # someone else's takeover, in effect
        await calls.client.incr(calls.keys.leader_token("upkeep"))
        with anyio.fail_after(LEASE_S + 1):
            await cancelled.wait()

        async def led_again() -> bool:
            return len(started) == 2

        await wait_for(led_again, what="the election to lead again with a new token")
        assert started[1] > started[0] + 1, "a fresh token, larger than the one spent in between"
        stop.set()
