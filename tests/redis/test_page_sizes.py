"""Every page size or count a caller passes is clamped inside the Function: an absurd value (huge,
negative, not a number) neither walks everything nor errors."""

from __future__ import annotations

import json

import pytest

from emp import defaults
from emp.redis.calls import Calls
from tests.redis.helpers import claim_job, register, server_clock_past, sig_of, submit

pytestmark = pytest.mark.anyio

ABSURD = (-1, 0, -(10**12), "many")


async def test_maintain_and_cleanup(calls: Calls) -> None:
    for page in (*ABSURD, 10**15):
        promoted, requeued, _ = await calls.maintain(page, 3)  # type: ignore[arg-type]
        assert (promoted, requeued) == (0, 0)
        assert await calls.cleanup(page) == (0, 0)  # type: ignore[arg-type]


async def test_maintain_moves_at_most_its_clamped_page(calls: Calls) -> None:
    await register(calls, "w1")
    await register(calls, "w2")
    await submit(calls, "a", "b")
    await claim_job(calls, "w1", lease_ms=1)
    await claim_job(calls, "w2", lease_ms=1)
    leases = await calls.client.zrange(calls.keys.leases, 0, -1, withscores=True)
    assert len(leases) == 2
    await server_clock_past(calls, max(score for _, score in leases))
    promoted, requeued, _ = await calls.maintain(-7, 3)
    assert requeued == 1, "a negative page is a page of one"


async def test_live_workers_page(calls: Calls) -> None:
    for i in range(3):
        await register(calls, f"w{i}")
    for count in (-1, 0):
        reply = await calls.client.fcall_ro("emp_live_workers", 1, calls.keys.workers, calls.p, 0, count)
        assert len(reply) == 1 + 6, "one worker, not all of them (after the next offset)"
    reply = await calls.client.fcall_ro("emp_live_workers", 1, calls.keys.workers, calls.p, -3, 10**15)
    assert len(reply) == 1 + 18


async def test_snapshot_limits(calls: Calls) -> None:
    await register(calls, "w")
    await submit(calls, "a", "b")
    await claim_job(calls, "w")
    reply = await calls.client.fcall_ro("emp_snapshot", 1, calls.keys.events, calls.p, -1, -1, -1)
    snap = json.loads(reply)
    assert not snap["active_jobs"] and not snap["workers"] and not snap["recent"]
    reply = await calls.client.fcall_ro("emp_snapshot", 1, calls.keys.events, calls.p, 10**15, 10**15, 10**15)
    snap = json.loads(reply)
    assert len(snap["active_jobs"]) == 1 and len(snap["workers"]) == 1


async def test_get_job_events(calls: Calls) -> None:
    await submit(calls, "a")
    await calls.cancel("a")
    for n, expected in ((-5, 0), (10**15, 1), ("x", 1)):
        reply = await calls.client.fcall_ro("emp_get_job", 1, calls.keys.job("a"), calls.p, "a", n)
        evs = json.loads(reply)["events"]
        assert len(evs or []) == expected, n


async def test_mark_and_revive_unworkable(calls: Calls) -> None:
    req = {"hardware.gpu_memory_gb": 80}
    await submit(calls, *[{"id": f"j{i}", "requirements": req} for i in range(3)])
    sig = sig_of("comfyui", req)
    code, moved, remaining = await calls.mark_unworkable("comfyui", sig, 0, -1)
    assert (code, moved, remaining) == ("OK", 1, 2)
    code, moved, remaining = await calls.mark_unworkable("comfyui", sig, 0, 10**15)
    assert (code, moved, remaining) == ("OK", 2, 0)
    assert await calls.revive_unworkable("comfyui", sig, 0) == ("OK", 1, 2)
    assert await calls.revive_unworkable("comfyui", sig, 10**15) == ("OK", 2, 0)
    assert defaults.MAINTENANCE_PAGE_MAX >= 3
