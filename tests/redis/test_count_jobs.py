"""emp_count_jobs: how many jobs each status has, for every service or one."""

from __future__ import annotations

import pytest
from redis.exceptions import ResponseError

from emp.redis.calls import Calls
from tests.redis.helpers import claim_job, register, server_ms, submit

pytestmark = pytest.mark.anyio

STATUSES = ("pending", "scheduled", "waiting", "assigned", "in_progress", "completed", "failed", "cancelled")
NONE = {s: 0 for s in (*STATUSES, "unworkable")}


async def some_of_everything(calls: Calls) -> None:
    """comfyui: 2 pending, 1 scheduled, 1 assigned, 1 in_progress, 2 completed, 1 failed, 1 cancelled;
    ollama: 1 pending, 1 completed."""
    await register(calls, "w", services=("comfyui", "ollama"))
    await submit(calls, {"id": "o-done", "service": "ollama", "priority": 99}, "done1", "done2", "bad", "run", "held")
    for _ in range(4):
        got = await claim_job(calls, "w")
        if got.id == "bad":
            await calls.fail(got.id, got.attempt, "w", "malformed", "x", 0.0)
        else:
            await calls.complete(got.id, got.attempt, "w")
    await claim_job(calls, "w")  # run: in_progress
    await claim_job(calls, "w", start=False)  # held: assigned
    later = await server_ms(calls) + 3_600_000
    await submit(
        calls, "wait1", "wait2", "gone", {"id": "sched", "run_at": later}, {"id": "o-wait", "service": "ollama"}
    )
    await calls.cancel("gone")


async def test_counts_every_status(calls: Calls) -> None:
    assert await calls.count_jobs() == NONE
    await some_of_everything(calls)
    assert await calls.count_jobs() == {
        **NONE,
        "pending": 3,
        "scheduled": 1,
        "assigned": 1,
        "in_progress": 1,
        "completed": 3,
        "failed": 1,
        "cancelled": 1,
    }


async def test_counts_of_one_service(calls: Calls) -> None:
    await some_of_everything(calls)
    assert await calls.count_jobs("ollama") == {**NONE, "pending": 1, "completed": 1}
    assert await calls.count_jobs("comfyui") == {
        **NONE,
        "pending": 2,
        "scheduled": 1,
        "assigned": 1,
        "in_progress": 1,
        "completed": 2,
        "failed": 1,
        "cancelled": 1,
    }
    assert await calls.count_jobs("nothing-here") == NONE


async def test_unworkable_jobs_are_counted(calls: Calls) -> None:
    await submit(calls, {"id": "big", "requirements": {"hardware.gpu_memory_gb": 80}})
    sig = (await calls.signatures())[0]["sig"]
    await calls.mark_unworkable("comfyui", sig, 0)
    assert (await calls.count_jobs())["unworkable"] == 1
    assert (await calls.count_jobs("comfyui"))["unworkable"] == 1
    assert (await calls.count_jobs("comfyui"))["pending"] == 0


async def test_a_call_goes_on_from_its_cursor(calls: Calls) -> None:
    """With a service, scheduled / running / ended jobs are read a page per call: a cursor says where
    the next call starts (here, half-way through the completed jobs)."""
    await some_of_everything(calls)
    r = calls.client
    reply = await r.fcall_ro("emp_count_jobs", 1, calls.keys.services, calls.keys.prefix, "comfyui", "completed|1")
    counts = {reply[i]: int(reply[i + 1]) for i in range(1, len(reply), 2)}
    assert reply[0] == ""
    # Offset 1 of done:completed (ordered by finish time) skips its first entry, whoever that is.
    after_first = await r.zrange(calls.keys.done("completed"), 1, -1)
    assert counts == {"completed": len([i for i in after_first if i != "o-done"]), "failed": 1, "cancelled": 1}


async def test_a_bad_cursor_is_refused(calls: Calls) -> None:
    with pytest.raises(ResponseError, match="EMP_INVALID bad cursor"):
        await calls.client.fcall_ro("emp_count_jobs", 1, calls.keys.services, calls.keys.prefix, "", "pending|0")
