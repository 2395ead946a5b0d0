"""emp_machines_offline: machines whose reports lapsed leave the live set, marked offline, with an event."""

from __future__ import annotations

import json

import pytest

from emp.redis.calls import Calls, Fence, LeaderLease, NotLeader, UpkeepCalls, leader_acquire
from tests.polling import wait_for
from tests.redis.helpers import events, server_clock_past

pytestmark = pytest.mark.anyio


async def test_a_silent_machine_is_marked_offline_once(calls: Calls) -> None:
    up = UpkeepCalls(calls)
    await calls.machine_report("gone", 50, {"status": "ready"})
    await calls.machine_report("alive", 60_000, {"status": "ready"})

    async def swept() -> int:
        return await up.machines_offline(100)

    assert await wait_for(swept, what="the 50 ms machine report to lapse") == 1
    assert await calls.client.zscore(calls.keys.machines, "gone") is None
    assert await calls.client.zscore(calls.keys.machines, "alive") is not None
    rec = await calls.client.hgetall(calls.keys.machine("gone"))
    assert rec["status"] == "offline" and "offline_at" in rec and rec["last_event"] == "machine_shutdown"
    assert 0 < await calls.client.ttl(calls.keys.machine("gone")) <= 86400
    ev = await events(calls, "machine_shutdown")
    assert len(ev) == 1 and ev[0]["machine"] == "gone" and json.loads(ev[0]["data"]) == {"reason": "report lapsed"}
    assert await up.machines_offline(100) == 0, "marked once"
    assert [m["id"] for m in await calls.list_machines()] == ["alive"]


async def test_one_page_a_call(calls: Calls) -> None:
    # Reports long enough that none lapses before the last is sent (a report marks lapsed ones offline).
    for i in range(5):
        await calls.machine_report(f"m{i}", 2_000, {})
    score = max(s for _, s in await calls.client.zrange(calls.keys.machines, 0, -1, withscores=True))
    await server_clock_past(calls, score)
    up = UpkeepCalls(calls)
    assert [await up.machines_offline(2) for _ in range(4)] == [2, 2, 1, 0]


async def test_a_stale_fence_is_refused_and_writes_nothing(calls: Calls) -> None:
    await calls.machine_report("gone", 1, {})
    score = await calls.client.zscore(calls.keys.machines, "gone")
    assert score is not None
    await server_clock_past(calls, score)
    lease = await leader_acquire(calls, "upkeep", "a", 60_000)
    assert isinstance(lease, LeaderLease)
    with pytest.raises(NotLeader):
        await UpkeepCalls(calls, Fence("upkeep", lease.token + 1)).machines_offline(100)
    assert await calls.client.zscore(calls.keys.machines, "gone") == score
    assert await events(calls, "machine_shutdown") == []
    assert await UpkeepCalls(calls, Fence("upkeep", lease.token)).machines_offline(100) == 1
