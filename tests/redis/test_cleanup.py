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
    claim_ids,
    events,
    job_hash,
    register,
    server_ms,
    sig_of,
    submit,
)

pytestmark = pytest.mark.anyio

REQ = {"hardware": {"gpu_memory_gb": 80}}
SIG = sig_of(SERVICE, REQ)


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


# -- unworkable retention ------------------------------------------------------------------------


async def age_unworkable(calls: Calls, job_id: str) -> None:
    """As if the job had been unworkable for the whole retention period (its `unworkable` score is
    when it got there)."""
    since = await server_ms(calls) - defaults.UNWORKABLE_RETENTION_S * 1000 - 1
    await calls.client.zadd(calls.keys.unworkable, {job_id: since})


async def cleanup_counts(calls: Calls) -> list[int]:
    """(trimmed, offline, unworkable failed, services pruned) of one emp_cleanup call."""
    return [int(x) for x in await calls.client.fcall("emp_cleanup", 1, calls.keys.workers, calls.p, 100)]


async def test_a_job_unworkable_past_its_retention_fails_visibly(calls: Calls) -> None:
    await submit(calls, {"id": "old", "requirements": REQ}, {"id": "young", "requirements": REQ})
    assert await calls.mark_unworkable(SERVICE, SIG, 0) == ("OK", 2, 0)
    ev = json.loads((await events(calls, "job_unworkable", "old"))[-1]["data"])
    assert ev["fails_at"] >= await server_ms(calls) + defaults.UNWORKABLE_RETENTION_S * 1000 - 60_000
    await age_unworkable(calls, "old")
    assert (await cleanup_counts(calls))[2] == 1
    h = await job_hash(calls, "old")
    assert h["status"] == "failed" and h["failure_class"] == "unworkable"
    assert "no live worker can run its requirements" in h["error"]
    assert await calls.client.zscore(calls.keys.done("failed"), "old") is not None
    assert await calls.client.zscore(calls.keys.unworkable, "old") is None
    left = await calls.client.zrange(calls.keys.unworkable_queue(SERVICE, SIG), 0, -1)
    assert [m[13:] for m in left] == ["young"]
    failed = json.loads((await events(calls, "job_failed", "old"))[-1]["data"])
    assert failed["failure_class"] == "unworkable"
    for key in (calls.keys.job("old"), calls.keys.payload("old"), calls.keys.job_events("old")):
        assert 0 < await calls.client.ttl(key) <= defaults.RETENTION_S, key
    assert (await job_hash(calls, "young"))["status"] == "unworkable", "a younger one waits on"
    assert (await cleanup_counts(calls))[2] == 0


async def test_the_last_expired_job_takes_its_flag_along(calls: Calls) -> None:
    await submit(calls, {"id": "a", "requirements": REQ})
    await calls.mark_unworkable(SERVICE, SIG, 0)
    await age_unworkable(calls, "a")
    await calls.cleanup(100)
    assert await calls.client.hget(calls.keys.usigs(SERVICE), SIG) is None
    assert not await calls.client.exists(calls.keys.unworkable_queue(SERVICE, SIG))


# -- pruning the services set --------------------------------------------------------------------


async def test_a_service_with_no_jobs_and_no_worker_leaves_the_services_set(calls: Calls) -> None:
    await register(calls, "w")  # serves SERVICE only
    await submit(calls, {"id": "g", "service": "ghost"}, {"id": "s", "service": SERVICE})
    await calls.mark_unworkable("ghost", sig_of("ghost"), 0)
    assert await calls.client.smembers(calls.keys.services) == {"ghost", SERVICE}
    assert (await cleanup_counts(calls))[3] == 0, "ghost still has an unworkable job"
    await age_unworkable(calls, "g")
    assert (await cleanup_counts(calls))[2:] == [1, 1]
    assert await calls.client.smembers(calls.keys.services) == {SERVICE}
    await submit(calls, {"id": "g2", "service": "ghost"})
    assert "ghost" in await calls.client.smembers(calls.keys.services), "a new job brings it back"


async def test_a_served_or_busy_service_stays(calls: Calls) -> None:
    await register(calls, "w")
    await submit(calls, "done")
    got = await claim(calls, "w")
    assert not isinstance(got, NotRegistered)
    await calls.complete("done", 1, "w")
    await calls.client.delete(calls.keys.sigs(SERVICE))  # as if its signatures were retired
    assert (await cleanup_counts(calls))[3] == 0, "a live worker serves it"
    await submit(calls, {"id": "queued", "service": "later"})
    assert (await cleanup_counts(calls))[3] == 0, "a pending job keeps its service"
    assert await calls.client.smembers(calls.keys.services) == {SERVICE, "later"}


async def test_a_pruned_service_takes_its_claim_index_bookkeeping_along(calls: Calls) -> None:
    await register(calls, "w", services=["ghost"])
    await submit(calls, {"id": "g", "service": "ghost"})
    assert await claim_ids(calls, "w") == ["g"]  # builds the worker's class index for ghost
    assert await calls.client.exists(calls.keys.classes("ghost")) == 1
    await calls.worker_offline("w", "test")
    for _ in range(100):  # one whole round of the retirement walk, grace 0
        if (await calls.retire_signatures(0))[1]:
            break
    assert (await cleanup_counts(calls))[3] == 1
    assert await calls.client.exists(calls.keys.classes("ghost"), calls.keys.sig_classes("ghost")) == 0
