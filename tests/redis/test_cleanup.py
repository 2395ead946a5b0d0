"""emp_cleanup: lapsed registrations are marked offline; listing indexes are trimmed."""

from __future__ import annotations

import json

import pytest

from emp import defaults
from emp.redis.calls import Calls, NotRegistered
from tests.polling import wait_for
from tests.redis.helpers import (
    SERVICE,
    claim,
    events,
    register,
    server_ms,
)

pytestmark = pytest.mark.anyio


async def lapse(calls: Calls) -> int:
    async def step() -> int:
        return (await calls.cleanup(100))[1]

    return int(await wait_for(step, what="the 50 ms registration to lapse"))


async def test_lapsed_registration_is_marked_offline(calls: Calls) -> None:
    await register(calls, "dead", ttl_ms=50)
    await register(calls, "alive", ttl_ms=60_000)
    await claim(calls, "dead")  # idle
    assert await lapse(calls) == 1
    w = await calls.client.hgetall(calls.keys.worker("dead"))
    assert w["status"] == "offline" and "offline_at" in w
    assert 0 < await calls.client.ttl(calls.keys.worker("dead")) <= 86400
    assert await calls.client.zscore(calls.keys.workers, "dead") is None
    assert await calls.client.zscore(calls.keys.idle(SERVICE), "dead") is None
    ev = (await events(calls, "worker_offline"))[0]
    assert ev["worker"] == "dead" and json.loads(ev["data"]) == {"reason": "registration lapsed"}
    assert (await calls.client.hgetall(calls.keys.worker("alive")))["status"] == "idle"
    assert await calls.cleanup(100) == (0, 0), "marked once"


async def test_a_lapsed_worker_is_told_to_register_again(calls: Calls) -> None:
    """Regression (heartbeat.lua answered `EXISTS worker:<wid>`): cleanup marks a lapsed worker
    offline (worker_offline event) but keeps its hash for a day; a worker that was only paused
    heartbeated again, got registered=1 and never re-registered: back in `workers` with status
    "offline", no worker_registered event, and its hash expiring 24 h later under it."""
    await register(calls, "paused", ttl_ms=50)
    await lapse(calls)
    registered, _ = await calls.heartbeat("paused", 30_000, 30_000)
    assert registered is False, "heartbeat says a worker that cleanup marked offline is still registered"


async def test_a_lapsed_workers_claim_says_not_registered(calls: Calls) -> None:
    """Regression, claim side of the above (_claim.lua claim_next only checked that the hash exists):
    a worker marked offline still claimed and ran jobs while missing from `workers` (invisible to
    live_workers, unworkable detection and the snapshot, and no worker_registered event)."""
    await register(calls, "paused", ttl_ms=50)
    await lapse(calls)
    got = await claim(calls, "paused")
    assert isinstance(got, NotRegistered), f"an offline worker claimed: {got!r}"


async def test_trims_listing_entries_older_than_retention(calls: Calls) -> None:
    now = await server_ms(calls)
    old = now - defaults.RETENTION_S * 1000 - 1000
    await calls.client.zadd(calls.keys.done("completed"), {"old1": old, "old2": old, "fresh": now})
    await calls.client.zadd(calls.keys.done("failed"), {"old3": old})
    assert await calls.cleanup(100) == (3, 0)
    assert await calls.client.zrange(calls.keys.done("completed"), 0, -1) == ["fresh"]
    assert await calls.client.zcard(calls.keys.done("failed")) == 0


async def test_nothing_to_clean(calls: Calls) -> None:
    await register(calls, "w")
    assert await calls.cleanup(100) == (0, 0)
    assert await events(calls, "worker_offline") == []
