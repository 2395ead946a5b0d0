"""emp_heartbeat: keeps the registration and the running jobs' leases; reports cancelled/stale."""

from __future__ import annotations

import pytest
from redis.exceptions import ResponseError

from emp.redis.calls import Calls
from tests.redis.helpers import (
    claim_job,
    register,
    server_ms,
    stale_setup,
    submit,
)

pytestmark = pytest.mark.anyio


async def test_heartbeat_extends_the_lease_and_the_registration(calls: Calls) -> None:
    await register(calls, "w", ttl_ms=1_000)
    await submit(calls, "a")
    got = await claim_job(calls, "w", lease_ms=1_000)
    lease0 = await calls.client.zscore(calls.keys.leases, "a")
    reg0 = await calls.client.zscore(calls.keys.workers, "w")
    t0 = await server_ms(calls)
    registered, states = await calls.heartbeat("w", 60_000, 120_000, [("a", got.attempt)])
    assert registered is True and states == ["ok"]
    lease1 = await calls.client.zscore(calls.keys.leases, "a")
    reg1 = await calls.client.zscore(calls.keys.workers, "w")
    assert lease1 >= t0 + 60_000 > lease0
    assert reg1 >= t0 + 120_000 > reg0
    assert int(await calls.client.hget(calls.keys.worker("w"), "last_seen")) >= t0


async def test_heartbeat_reports_cancelled_after_cancel(calls: Calls) -> None:
    await register(calls, "w")
    await submit(calls, "a", "b")
    a = await claim_job(calls, "w")
    await calls.cancel("a")
    registered, states = await calls.heartbeat("w", 30_000, 30_000, [("a", a.attempt)])
    assert registered and states == ["cancelled"]
    assert await calls.client.zscore(calls.keys.leases, "a") is None, "a cancelled job's lease is not revived"


async def test_heartbeat_reports_stale_for_an_old_attempt_and_does_not_touch_the_new_lease(calls: Calls) -> None:
    first, second = await stale_setup(calls)
    lease = await calls.client.zscore(calls.keys.leases, "a")
    registered, states = await calls.heartbeat("w1", 999_999, 30_000, [("a", first.attempt)])
    assert registered and states == ["stale"]
    assert await calls.client.zscore(calls.keys.leases, "a") == lease
    _, states = await calls.heartbeat("w2", 60_000, 30_000, [("a", second.attempt)])
    assert states == ["ok"]


async def test_heartbeat_per_job_states_in_order(calls: Calls) -> None:
    await register(calls, "w")
    await submit(calls, "a", "b", "c")
    a = await claim_job(calls, "w")
    b = await claim_job(calls, "w")
    await calls.cancel("b")
    _, states = await calls.heartbeat("w", 30_000, 30_000, [("a", a.attempt), ("b", b.attempt), ("gone", 1)])
    assert states == ["ok", "cancelled", "gone"]


async def test_heartbeat_of_an_unknown_worker_says_not_registered(calls: Calls) -> None:
    registered, states = await calls.heartbeat("ghost", 30_000, 30_000)
    assert registered is False and states == []
    assert await calls.client.zscore(calls.keys.workers, "ghost") is None


async def test_heartbeat_of_a_completed_job_is_stale(calls: Calls) -> None:
    await register(calls, "w")
    await submit(calls, "a")
    a = await claim_job(calls, "w")
    await calls.complete("a", a.attempt, "w")
    _, states = await calls.heartbeat("w", 30_000, 30_000, [("a", a.attempt)])
    assert states == ["stale"]
    assert await calls.client.zscore(calls.keys.leases, "a") is None


async def test_bad_arguments_are_refused(calls: Calls) -> None:
    with pytest.raises(ResponseError, match="EMP_INVALID lease_ms"):
        await calls.client.fcall("emp_heartbeat", 1, calls.keys.workers, calls.keys.prefix, "w", "x", "y")
