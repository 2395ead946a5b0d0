"""emp_worker_offline: a worker leaves cleanly; it is no longer woken or listed as live."""

from __future__ import annotations

import json

import pytest

from emp.redis.calls import Calls
from tests.redis.helpers import (
    SERVICE,
    claim,
    claim_job,
    events,
    job_hash,
    register,
    submit,
)

pytestmark = pytest.mark.anyio


async def test_offline_removes_the_worker_from_live_and_idle_sets(calls: Calls) -> None:
    await register(calls, "w", services=(SERVICE, "a1111"), wake_token="tok")
    await claim(calls, "w")  # idle in both services
    assert await calls.worker_offline("w", "shutdown") is True
    assert await calls.client.zscore(calls.keys.workers, "w") is None
    for svc in (SERVICE, "a1111"):
        assert await calls.client.zscore(calls.keys.idle(svc), "w") is None
    w = await calls.client.hgetall(calls.keys.worker("w"))
    assert w["status"] == "offline" and w["job"] == "" and "offline_at" in w
    assert 0 < await calls.client.ttl(calls.keys.worker("w")) <= 86400, "kept a day for post-mortems"
    assert not await calls.client.exists(calls.keys.prefix + "wm:w")
    ev = (await events(calls, "worker_offline"))[0]
    assert ev["worker"] == "w" and json.loads(ev["data"]) == {"reason": "shutdown"}
    assert await calls.live_workers() == []
    # It is not woken any more.
    await submit(calls, "a")
    assert await calls.client.llen(calls.keys.wake("tok")) == 0


async def test_offline_does_not_touch_the_jobs_it_holds(calls: Calls) -> None:
    await register(calls, "w")
    await submit(calls, "a")
    await claim_job(calls, "w")
    await calls.worker_offline("w", "crash")
    assert (await job_hash(calls, "a"))["status"] == "in_progress"
    assert await calls.client.zscore(calls.keys.leases, "a") is not None


async def test_offline_of_an_unknown_worker(calls: Calls) -> None:
    assert await calls.worker_offline("ghost", "x") is False
    assert await calls.client.xlen(calls.keys.events) == 0
