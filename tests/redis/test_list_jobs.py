"""emp_list_jobs: a page of jobs by status, in the order that status is served or ended."""

from __future__ import annotations

import pytest

from emp.errors import JobValidationError
from emp.redis.calls import Calls
from tests.redis.conftest import (
    claim_job,
    register,
    server_ms,
    submit,
)

pytestmark = pytest.mark.anyio


def ids(rows: list[dict[str, str]]) -> list[str]:
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
    assert ids(await calls.list_jobs("pending", limit=2)) == ["hi-req", "ollama"]


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
    every = await calls.list_jobs("")
    assert ids(every) == ["run", "wait", "sched", "bad", "gone", "done"]
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
        # distinct finish times
        t = await server_ms(calls)
        while await server_ms(calls) == t:
            pass
    assert ids(await calls.list_jobs("completed")) == ["c", "b", "a"]


async def test_bad_status_or_limit_is_refused(calls: Calls) -> None:
    with pytest.raises(JobValidationError, match="unknown status"):
        await calls.list_jobs("exploded")
    with pytest.raises(JobValidationError, match="limit"):
        await calls.list_jobs("pending", limit=0)


async def test_empty(calls: Calls) -> None:
    assert await calls.list_jobs("") == []
