"""emp_snapshot: the fleet's state with the id of the last event it includes."""

from __future__ import annotations

import pytest

from emp.model.snapshot import ServiceQueue
from emp.redis.calls import Calls
from tests.redis.helpers import (
    SERVICE,
    claim_job,
    register,
    server_ms,
    submit,
)

pytestmark = pytest.mark.anyio


async def last_event_id(calls: Calls) -> str:
    last = await calls.client.xrevrange(calls.keys.events, count=1)
    return str(last[0][0]) if last else "0-0"


async def test_empty_namespace(calls: Calls) -> None:
    snap = await calls.snapshot()
    assert snap.stream_id == "0-0" and snap.first_id == "0-0"
    assert snap.workers == () and snap.active_jobs == () and snap.recent == ()
    assert snap.services == {} and snap.scheduled == 0 and snap.active == 0


async def test_counts_agree_with_what_happened(calls: Calls) -> None:
    await register(calls, "w1", machine_id="m1")
    await register(calls, "w2", machine_id="m2")
    await submit(calls, "a", "b", "c", "e", {"id": "d", "run_at": await server_ms(calls) + 3_600_000})
    await submit(calls, {"id": "o", "service": "ollama"})
    await submit(calls, {"id": "big", "requirements": {"hardware": {"gpu_memory_gb": 80}}})
    a = await claim_job(calls, "w1")
    b = await claim_job(calls, "w2")
    await calls.complete(b.id, b.attempt, "w2")
    await calls.cancel("c")
    snap = await calls.snapshot()
    assert a.id == "a" and b.id == "b"
    assert snap.services[SERVICE] == ServiceQueue(pending=2, unworkable=0, signatures=2)  # e and big
    assert snap.services["ollama"] == ServiceQueue(pending=1, unworkable=0, signatures=1)
    assert snap.scheduled == 1 and snap.active == 1 and snap.unworkable == 0
    assert snap.done == {"completed": 1, "failed": 0, "cancelled": 1}
    assert snap.stats["submitted"] == 7
    assert [j.id for j in snap.active_jobs] == ["a"]
    assert snap.active_jobs[0].status == "in_progress" and snap.active_jobs[0].worker_id == "w1"
    assert sorted(j.id for j in snap.recent) == ["b", "c"]
    workers = {w.id: w for w in snap.workers}
    assert workers["w1"].status == "busy" and workers["w1"].job == "a" and workers["w1"].machine_id == "m1"
    assert workers["w2"].status == "idle" and workers["w2"].completed == 1
    assert snap.stream_id == await last_event_id(calls)
    first = await calls.client.xrange(calls.keys.events, count=1)
    assert snap.first_id == first[0][0]


async def test_reading_the_stream_after_stream_id_gives_exactly_the_later_changes(calls: Calls) -> None:
    await register(calls, "w")
    await submit(calls, "a", "b")
    snap = await calls.snapshot()
    got = await claim_job(calls, "w")
    await calls.complete(got.id, got.attempt, "w")
    later = await calls.client.xrange(calls.keys.events, min=f"({snap.stream_id}")
    assert [(f["type"], f["job"]) for _, f in later] == [("job_started", "a"), ("job_completed", "a")]


async def test_limits_are_honoured(calls: Calls) -> None:
    for i in range(3):
        await register(calls, f"w{i}")
    await submit(calls, *[f"j{i}" for i in range(3)])
    for i in range(3):
        await claim_job(calls, f"w{i}")
    snap = await calls.snapshot(max_active=2, max_workers=1, max_recent=1)
    assert len(snap.active_jobs) == 2 and len(snap.workers) == 1
    assert snap.active == 3
