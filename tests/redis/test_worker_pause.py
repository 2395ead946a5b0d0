"""emp_worker_pause: a worker whose service is down leaves the idle sets but stays registered."""

from __future__ import annotations

import json

import pytest

from emp.redis.calls import Calls, ClaimedJob
from tests.redis.helpers import SERVICE, claim, events, register, submit

pytestmark = pytest.mark.anyio


async def test_pause_leaves_idle_sets_and_is_not_woken(calls: Calls) -> None:
    await register(calls, "w", services=(SERVICE, "a1111"), wake_token="tok")
    await claim(calls, "w")  # idle in both services
    assert await calls.client.zscore(calls.keys.idle(SERVICE), "w") is not None
    assert await calls.worker_pause("w", "comfyui offline: connection refused") is True
    for svc in (SERVICE, "a1111"):
        assert await calls.client.zscore(calls.keys.idle(svc), "w") is None
    w = await calls.client.hgetall(calls.keys.worker("w"))
    assert w["status"] == "paused" and w["paused_reason"] == "comfyui offline: connection refused"
    ev = (await events(calls, "worker_status"))[-1]
    assert ev["worker"] == "w" and json.loads(ev["data"]) == {
        "status": "paused",
        "reason": "comfyui offline: connection refused",
    }
    # Still live: its capabilities keep counting for unworkable detection.
    assert [lw.id for lw in await calls.live_workers()] == ["w"]
    await submit(calls, "a")
    assert await calls.client.llen(calls.keys.wake("tok")) == 0, "a paused worker is not woken"


async def test_the_next_claim_resumes_the_worker(calls: Calls) -> None:
    await register(calls, "w", wake_token="tok")
    await calls.worker_pause("w", "down")
    await submit(calls, "a")
    got = await claim(calls, "w")
    assert isinstance(got, ClaimedJob) and got.id == "a"
    assert (await calls.client.hget(calls.keys.worker("w"), "status")) == "busy"


async def test_pause_of_an_unknown_worker_changes_nothing(calls: Calls) -> None:
    assert await calls.worker_pause("ghost", "down") is False
    assert not await calls.client.exists(calls.keys.worker("ghost"))
    assert await events(calls, "worker_status") == []
