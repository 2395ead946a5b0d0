"""emp.coordinator.maintenance against a real Redis: unworkable detection, revival, the pass and its guard."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest

from emp.coordinator.maintenance import (
    MaintenanceReport,
    detect_unworkable,
    maintenance_loop,
    run_guarded_pass,
    run_maintenance_once,
)
from emp.model.requirements import canonicalize
from emp.redis.calls import Calls
from emp.redis.client import connect
from tests.polling import wait_for

pytestmark = pytest.mark.anyio

WORKER_TTL_MS = 30_000


def wire(job_id: str, service: str = "comfyui", requirements: Any = None, priority: int = 50) -> dict[str, Any]:
    return {
        "id": job_id,
        "service": service,
        "priority": priority,
        "payload": json.dumps({"steps": 1}),
        "requirements": canonicalize(requirements).text,
        "max_attempts": 3,
    }


async def register(calls: Calls, worker_id: str, gpu_gb: int, services: tuple[str, ...] = ("comfyui",)) -> None:
    caps = {"services": list(services), "hardware": {"gpu_memory_gb": gpu_gb}}
    await calls.register_worker(worker_id, "m1", services, caps, f"wake-{worker_id}", WORKER_TTL_MS)


async def status(calls: Calls, job_id: str) -> str:
    job = await calls.get_job(job_id, events=1)
    assert job is not None
    return str(job.status)


async def status_is(calls: Calls, job_id: str, expected: str) -> bool:
    return await status(calls, job_id) == expected


async def signature_row(calls: Calls, service: str = "comfyui") -> dict[str, Any]:
    rows = [r for r in await calls.signatures() if r["service"] == service]
    assert len(rows) == 1, rows
    return rows[0]


NEEDS_48 = {"hardware": {"gpu_memory_gb": 48}}


async def test_unworkable_after_grace_then_revived_by_a_matching_worker(calls: Calls) -> None:
    await register(calls, "w24", 24)
    assert await calls.submit([wire("j48", requirements=NEEDS_48)], 1 << 20) == ["pending"]

    # Within the grace: the Function refuses (TOO_SOON) and the job stays pending.
    assert await detect_unworkable(calls, grace_s=60) == (0, 0)
    assert await status(calls, "j48") == "pending"

    # Once the head job has waited the grace, the signature is flagged and its job moved.
    async def marked_once() -> tuple[int, int] | None:
        result = await detect_unworkable(calls, grace_s=0.2)
        return result if result[0] else None

    assert await wait_for(marked_once, what="the signature to be marked unworkable") == (1, 0)
    assert await status(calls, "j48") == "unworkable"
    row = await signature_row(calls)
    assert row["unworkable"] is True and row["unworkable_count"] == 1 and row["pending"] == 0

    # Nothing changes while no matching worker is live.
    assert await detect_unworkable(calls, grace_s=0.2) == (0, 0)
    # A new job of the flagged signature goes straight to unworkable.
    assert await calls.submit([wire("j48b", requirements=NEEDS_48)], 1 << 20) == ["unworkable"]

    # A 48 GB worker appears: its registration revives both jobs to pending, the flag is gone,
    # and the maintenance pass has nothing left to do.
    await register(calls, "w48", 48)
    assert await detect_unworkable(calls, grace_s=0.2) == (0, 0)
    assert await status(calls, "j48") == "pending"
    assert await status(calls, "j48b") == "pending"
    row = await signature_row(calls)
    assert row["unworkable"] is False and row["reviving"] is False and row["pending"] == 2
    assert await detect_unworkable(calls, grace_s=0) == (0, 0)


async def test_matching_signature_stays_pending(calls: Calls) -> None:
    await register(calls, "w24", 24)
    await calls.submit([wire("j16", requirements={"hardware": {"gpu_memory_gb": 16}}), wire("plain")], 1 << 20)
    assert await detect_unworkable(calls, grace_s=0) == (0, 0)
    assert await status(calls, "j16") == "pending"
    assert await status(calls, "plain") == "pending"


async def test_worker_of_another_service_does_not_count(calls: Calls) -> None:
    await register(calls, "w-other", 80, services=("ollama",))
    await calls.submit([wire("j", requirements=NEEDS_48)], 1 << 20)
    assert await detect_unworkable(calls, grace_s=0) == (1, 0)
    assert await status(calls, "j") == "unworkable"


async def test_no_live_worker_at_all_marks_after_grace(calls: Calls) -> None:
    await calls.submit([wire("lonely")], 1 << 20)
    assert await detect_unworkable(calls, grace_s=0) == (1, 0)
    assert await status(calls, "lonely") == "unworkable"


async def test_empty_signature_is_not_flagged(calls: Calls) -> None:
    """A signature whose jobs all ran keeps no flag, so the next job of it still gets its grace."""
    await calls.submit([wire("j", requirements=NEEDS_48)], 1 << 20)
    await calls.cancel("j")
    assert (await signature_row(calls))["pending"] == 0
    assert await detect_unworkable(calls, grace_s=0) == (0, 0)
    assert (await signature_row(calls))["unworkable"] is False
    assert await calls.submit([wire("j2", requirements=NEEDS_48)], 1 << 20) == ["pending"]


async def test_reviving_signature_without_a_match_is_marked_again(calls: Calls) -> None:
    await calls.submit([wire("a", requirements=NEEDS_48), wire("b", requirements=NEEDS_48)], 1 << 20)
    assert await detect_unworkable(calls, grace_s=0) == (2, 0)
    row = await signature_row(calls)
    # A revive interrupted after one page (its process died) leaves the signature "reviving".
    assert await calls.revive_unworkable("comfyui", row["sig"], page=1) == ("OK", 1, 1)
    assert (await signature_row(calls))["reviving"] is True
    # Still no 48 GB worker: the next pass flags it again and moves the revived job back.
    assert await detect_unworkable(calls, grace_s=0) == (1, 0)
    row = await signature_row(calls)
    assert row["unworkable"] is True and row["reviving"] is False and row["unworkable_count"] == 2
    assert {await status(calls, "a"), await status(calls, "b")} == {"unworkable"}


async def test_run_maintenance_once_reports(calls: Calls) -> None:
    await calls.submit([wire("x", requirements=NEEDS_48)], 1 << 20)
    report = await run_maintenance_once(calls, grace_s=0, max_lost=3, page=100)
    assert isinstance(report, MaintenanceReport)
    assert report.marked_unworkable == 1 and report.revived == 0
    assert report.did_something and "unworkable 1" in report.summary()
    again = await run_maintenance_once(calls, grace_s=0, max_lost=3, page=100)
    assert not again.did_something and again.summary() == "nothing to do"


async def test_guard_makes_a_concurrent_pass_skip(calls: Calls) -> None:
    await calls.submit([wire("g", requirements=NEEDS_48)], 1 << 20)
    results: list[MaintenanceReport | None] = []

    async def one_pass() -> None:
        results.append(await run_guarded_pass(calls, interval_s=30, grace_s=0, max_lost=3))

    async with anyio.create_task_group() as tg:
        tg.start_soon(one_pass)
        tg.start_soon(one_pass)
    assert len(results) == 2
    ran = [r for r in results if r is not None]
    assert len(ran) == 1, results
    assert ran[0].marked_unworkable == 1
    # The guard still holds (90 % of the 30 s interval): a third pass skips too.
    assert await run_guarded_pass(calls, interval_s=30, grace_s=0, max_lost=3) is None
    assert await calls.client.pttl(calls.keys.guard("maintenance")) > 20_000


async def test_maintenance_loop_runs_until_stopped(calls: Calls) -> None:
    await calls.submit([wire("loop", requirements=NEEDS_48)], 1 << 20)
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: maintenance_loop(calls, interval_s=0.05, grace_s=0, max_lost=3, stop=stop))
        await wait_for(lambda: status_is(calls, "loop", "unworkable"), what="the job to turn unworkable")
        await register(calls, "w48", 48)
        await wait_for(lambda: status_is(calls, "loop", "pending"), what="the job to be revived")
        stop.set()
    # The task group exits only because the loop returned once stop was set.


async def test_maintenance_loop_refuses_a_zero_interval(calls: Calls) -> None:
    with pytest.raises(ValueError):
        await maintenance_loop(calls, interval_s=0, grace_s=0, max_lost=3, stop=anyio.Event())


async def test_maintenance_loop_survives_an_unreachable_redis(caplog: pytest.LogCaptureFixture) -> None:
    client = connect("redis://127.0.0.1:1/0")  # nothing listens on port 1: connection refused
    stop = anyio.Event()
    try:
        with caplog.at_level("DEBUG", logger="emp.coordinator.maintenance"):
            async with anyio.create_task_group() as tg:
                tg.start_soon(
                    lambda: maintenance_loop(Calls(client, "tdown"), interval_s=0.02, grace_s=0, max_lost=3, stop=stop)
                )

                async def three_failures() -> bool:
                    return len([r for r in caplog.records if "maintenance pass failed" in r.getMessage()]) >= 3

                await wait_for(three_failures, what="three failed passes")
                stop.set()
    finally:
        await client.aclose()
    failures = [r for r in caplog.records if "maintenance pass failed" in r.getMessage()]
    # One warning per outage; the repeats are debug.
    assert [r.levelname for r in failures][:3] == ["WARNING", "DEBUG", "DEBUG"]
