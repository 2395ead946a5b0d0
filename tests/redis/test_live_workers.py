"""emp_live_workers: the workers whose registration has not lapsed, with their capabilities."""

from __future__ import annotations

import pytest

from emp.redis.calls import Calls, LiveWorker
from tests.polling import wait_for
from tests.redis.helpers import (
    SERVICE,
    caps_with,
    claim_job,
    register,
    submit,
)

pytestmark = pytest.mark.anyio


async def test_lists_live_workers_with_caps_status_and_job(calls: Calls) -> None:
    caps = caps_with(pool="spot", services=[SERVICE, "a1111"])
    await register(calls, "w1", services=(SERVICE, "a1111"), caps=caps, machine_id="m1")
    await register(calls, "w2", machine_id="m2")
    await submit(calls, "a")
    await claim_job(calls, "w2")
    rows = {w.id: w for w in await calls.live_workers()}
    assert rows["w1"] == LiveWorker("w1", caps, [SERVICE, "a1111"], "idle", "", "m1")
    assert rows["w2"].status == "busy" and rows["w2"].job == "a" and rows["w2"].machine_id == "m2"


async def test_a_lapsed_registration_is_not_listed(calls: Calls) -> None:
    await register(calls, "short", ttl_ms=30)
    await register(calls, "long")

    async def only_long() -> bool:
        return [w.id for w in await calls.live_workers()] == ["long"]

    await wait_for(only_long, what="the 30 ms registration to lapse")


async def test_pages_cover_every_worker(calls: Calls) -> None:
    ids = [f"w{i}" for i in range(7)]
    for wid in ids:
        await register(calls, wid)
    assert sorted(w.id for w in await calls.live_workers(page=2)) == ids
    assert sorted(w.id for w in await calls.live_workers(page=7)) == ids


async def test_nobody(calls: Calls) -> None:
    assert await calls.live_workers() == []


async def test_a_missing_hash_does_not_end_the_paging_early(calls: Calls) -> None:
    """An index entry whose hash is gone (deleted by hand, lost by an eviction) makes its page
    short; the pages after it must still be read."""
    ids = [f"w{i}" for i in range(7)]
    for wid in ids:
        await register(calls, wid)
    listed = [w.id for w in await calls.live_workers(page=3)]
    missing = listed[1]  # in the middle of the first page
    await calls.client.delete(calls.keys.worker(missing))
    rest = sorted(i for i in ids if i != missing)
    assert sorted(w.id for w in await calls.live_workers(page=3)) == rest
    assert sorted(w.id for w in await calls.live_workers(page=2)) == rest
    reply = await calls.client.fcall_ro("emp_live_workers", 1, calls.keys.workers, calls.p, 0, 3)
    assert reply[0] == "3" and len(reply) == 1 + 2 * 6, "a short page still names the next offset"
    reply = await calls.client.fcall_ro("emp_live_workers", 1, calls.keys.workers, calls.p, 6, 3)
    assert reply[0] == "", "the last page says so"
