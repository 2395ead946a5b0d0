"""emp_list_jobs: a page of jobs by status, in the order that status is served or ended."""

from __future__ import annotations

import json
from typing import Any

import pytest

from emp import defaults
from emp.errors import JobValidationError
from emp.redis.calls import Calls
from tests.redis.helpers import (
    claim_job,
    register,
    server_clock_past,
    server_ms,
    submit,
)

pytestmark = pytest.mark.anyio


def ids(page: tuple[list[dict[str, Any]], str]) -> list[str]:
    """The ids of a page that must be the whole listing (no next cursor)."""
    rows, cursor = page
    assert cursor == "", "the listing was expected to fit in one page"
    return [r["id"] for r in rows]


async def test_pending_in_queue_order_across_signatures_and_services(calls: Calls) -> None:
    await submit(
        calls,
        {"id": "low", "priority": 10},
        {"id": "hi-req", "priority": 90, "requirements": {"pool": "x"}},
        {"id": "mid", "priority": 50},
        {"id": "ollama", "priority": 70, "service": "ollama"},
        {"id": "mid2", "priority": 50, "requirements": {"pool": "y"}},
    )
    assert ids(await calls.list_jobs("pending")) == ["hi-req", "ollama", "mid", "mid2", "low"]
    assert ids(await calls.list_jobs("pending", service="ollama")) == ["ollama"]
    rows, cursor = await calls.list_jobs("pending", limit=2)
    assert [r["id"] for r in rows] == ["hi-req", "ollama"] and cursor != ""
    rows, cursor = await calls.list_jobs("pending", limit=2, cursor=cursor)
    assert [r["id"] for r in rows] == ["mid", "mid2"] and cursor != ""
    rows, cursor = await calls.list_jobs("pending", limit=2, cursor=cursor)
    assert [r["id"] for r in rows] == ["low"] and cursor == ""


async def test_every_status_and_its_row(calls: Calls) -> None:
    await register(calls, "w")
    later = await server_ms(calls) + 3_600_000
    await submit(calls, "run", "done", "bad", "gone", "wait", {"id": "sched", "run_at": later}, customer_id="acme")
    run = await claim_job(calls, "w")
    done = await claim_job(calls, "w")
    await calls.complete(done.id, done.attempt, "w")
    bad = await claim_job(calls, "w")
    await calls.fail(bad.id, bad.attempt, "w", "malformed", "x", 0.0)
    await calls.cancel("gone")
    assert ids(await calls.list_jobs("in_progress")) == ["run"]
    assert ids(await calls.list_jobs("active")) == ["run"]
    assert ids(await calls.list_jobs("assigned")) == []
    assert ids(await calls.list_jobs("completed")) == ["done"]
    assert ids(await calls.list_jobs("failed")) == ["bad"]
    assert ids(await calls.list_jobs("cancelled")) == ["gone"]
    assert ids(await calls.list_jobs("scheduled")) == ["sched"]
    assert ids(await calls.list_jobs("pending")) == ["wait"]
    every, cursor = await calls.list_jobs("")
    assert ids((every, cursor)) == ["run", "wait", "sched", "bad", "gone", "done"]
    row = next(r for r in every if r["id"] == "bad")
    assert row["status"] == "failed" and row["failure_class"] == "malformed" and row["customer_id"] == "acme"
    assert row["attempt"] == "1" and "finished_at" in row and row["priority"] == "50"
    assert run.id == "run"


async def test_ended_jobs_newest_first(calls: Calls) -> None:
    await register(calls, "w")
    await submit(calls, "a", "b", "c")
    for _ in range(3):
        got = await claim_job(calls, "w")
        await calls.complete(got.id, got.attempt, "w")
        await server_clock_past(calls, await server_ms(calls))  # distinct finish times
    assert ids(await calls.list_jobs("completed")) == ["c", "b", "a"]


async def test_bad_status_or_cursor_is_refused(calls: Calls) -> None:
    with pytest.raises(JobValidationError, match="unknown status"):
        await calls.list_jobs("exploded")
    with pytest.raises(JobValidationError, match="cursor"):
        await calls.list_jobs("pending", cursor="completed|1|x")
    with pytest.raises(JobValidationError, match="cursor"):
        await calls.list_jobs("", cursor="garbage")


async def test_absurd_limits_are_clamped_not_refused(calls: Calls) -> None:
    job_ids = [f"j{i:04d}" for i in range(defaults.LIST_PAGE_MAX + 5)]
    await submit(calls, *job_ids[:500])
    await submit(calls, *job_ids[500:])
    for absurd in (0, -1, -(10**12)):
        rows, cursor = await calls.list_jobs("pending", limit=absurd)
        assert len(rows) == 1 and cursor != "", absurd
    rows, cursor = await calls.list_jobs("pending", limit=10**15)
    assert len(rows) == defaults.LIST_PAGE_MAX and cursor != ""
    rows, cursor = await calls.list_jobs("pending", limit=10**15, cursor=cursor)
    assert len(rows) == 5 and cursor == ""
    reply = await calls.client.fcall_ro(
        "emp_list_jobs", 1, calls.keys.services, calls.keys.prefix, "pending", "", "not-a-number", ""
    )
    assert len(json.loads(reply[0])) == defaults.LIST_PAGE


async def test_empty(calls: Calls) -> None:
    assert await calls.list_jobs("") == ([], "")


async def test_a_page_goes_on_after_its_last_job_even_when_that_job_left(calls: Calls) -> None:
    # One batch: every job has the same score, so the cursor's place is found among equals.
    await submit(calls, *[f"j{i}" for i in range(10)], {"id": "other", "requirements": {"pool": "x"}})
    rows, cursor = await calls.list_jobs("pending", limit=4)
    assert [r["id"] for r in rows] == ["j0", "j1", "j2", "j3"]
    await calls.cancel("j3")  # the cursor's own entry is gone
    await calls.cancel("j4")
    rows, cursor = await calls.list_jobs("pending", limit=4, cursor=cursor)
    assert [r["id"] for r in rows] == ["j5", "j6", "j7", "j8"]
    rows, cursor = await calls.list_jobs("pending", limit=4, cursor=cursor)
    assert [r["id"] for r in rows] == ["j9", "other"] and cursor == ""


async def test_a_service_filter_on_ended_jobs_pages_through_the_others(calls: Calls) -> None:
    await register(calls, "w", services=("comfyui", "ollama"))
    await submit(calls, *[{"id": f"o{i}", "service": "ollama", "priority": 90} for i in range(3)], "c0", "c1")
    for _ in range(5):
        got = await claim_job(calls, "w")
        await calls.complete(got.id, got.attempt, "w")
    rows, cursor = await calls.list_jobs("completed", service="comfyui", limit=1)
    seen = [r["id"] for r in rows]
    while cursor:
        rows, cursor = await calls.list_jobs("completed", service="comfyui", limit=1, cursor=cursor)
        seen += [r["id"] for r in rows]
    assert sorted(seen) == ["c0", "c1"]


# -- 2,500 jobs across every status ------------------------------------------------------------


async def fleet_of_2500(calls: Calls) -> dict[str, list[str]]:
    """2,500 jobs: 50 running, 400 completed, 100 failed, 150 cancelled, 300 scheduled, 1,500 pending
    (two services, three signatures, several priorities, batches sharing one created_at)."""
    await register(calls, "w", services=("runner",))
    run_ids = [f"r{i:04d}" for i in range(550)]
    for start in range(0, 550, 500):
        await submit(calls, *run_ids[start : start + 500], service="runner")
    for i in range(550):
        got = await claim_job(calls, "w")
        if i < 400:
            await calls.complete(got.id, got.attempt, "w")
        elif i < 500:
            await calls.fail(got.id, got.attempt, "w", "malformed", "bad", 0.0)
    cancel_ids = [f"x{i:04d}" for i in range(150)]
    await submit(calls, *cancel_ids, service="nobody")
    for job_id in cancel_ids:
        await calls.cancel(job_id)
    later = await server_ms(calls) + 3_600_000
    await submit(calls, *[{"id": f"s{i:04d}", "run_at": later + i % 17} for i in range(300)])
    pending_ids = [f"p{i:04d}" for i in range(1500)]
    jobs: list[dict[str, Any]] = []
    for i, job_id in enumerate(pending_ids):
        job: dict[str, Any] = {"id": job_id, "priority": 10 * (i % 4)}
        if i % 3 == 1:
            job["requirements"] = {"pool": "x"}
        if i % 5 == 0:
            job["service"] = "ollama"
        jobs.append(job)
    for start in range(0, 1500, 1000):
        await submit(calls, *jobs[start : start + 1000])
    return {"running": run_ids[500:], "pending": pending_ids}


async def expected_order(calls: Calls) -> list[str]:
    """The documented order, read from the indexes themselves."""
    r = calls.client
    order = list(await r.zrange(calls.keys.leases, 0, -1))
    queued: list[tuple[float, str]] = []
    for service in await r.smembers(calls.keys.services):
        for sig in await r.hkeys(calls.keys.sigs(service)):
            queued += [(s, m) for m, s in await r.zrange(calls.keys.queue(service, sig), 0, -1, withscores=True)]
    order += [m[13:] for _, m in sorted(queued)]
    order += list(await r.zrange(calls.keys.scheduled, 0, -1))
    order += list(await r.zrange(calls.keys.waiting, 0, -1))
    order += list(await r.zrevrange(calls.keys.unworkable, 0, -1))
    for status in ("failed", "cancelled", "completed"):
        order += list(await r.zrevrange(calls.keys.done(status), 0, -1))
    return order


async def test_2500_jobs_page_by_1000_each_exactly_once_in_order(calls: Calls) -> None:
    fleet = await fleet_of_2500(calls)
    rows, cursor = await calls.list_jobs("", limit=1000)
    pages = [rows]
    while cursor:
        rows, cursor = await calls.list_jobs("", limit=1000, cursor=cursor)
        pages.append(rows)
    assert [len(p) for p in pages] == [1000, 1000, 500]
    listed = [r["id"] for page in pages for r in page]
    assert len(set(listed)) == 2500
    assert listed == await expected_order(calls)
    # The order is the documented one: running, pending by priority, scheduled, then ended.
    rank = {"in_progress": 0, "pending": 1, "scheduled": 2, "failed": 3, "cancelled": 4, "completed": 5}
    statuses = [rank[r["status"]] for page in pages for r in page]
    assert statuses == sorted(statuses)
    pending = [r for page in pages for r in page if r["status"] == "pending"]
    assert [r["id"] for r in pending][:1] != [] and {r["id"] for r in pending} == set(fleet["pending"])
    priorities = [int(r["priority"]) for r in pending]
    assert priorities == sorted(priorities, reverse=True)
    assert await calls.count_jobs() == {
        "pending": 1500,
        "scheduled": 300,
        "waiting": 0,
        "assigned": 0,
        "in_progress": 50,
        "completed": 400,
        "failed": 100,
        "cancelled": 150,
        "unworkable": 0,
    }
    # Pending alone, in small pages: the cursor crosses signatures, services and equal scores.
    small, cursor = await calls.list_jobs("pending", limit=7)
    while cursor:
        rows, cursor = await calls.list_jobs("pending", limit=7, cursor=cursor)
        small += rows
    assert [r["id"] for r in small] == [r["id"] for r in pending]
