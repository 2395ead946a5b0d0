"""emp_schedule_list: every schedule in the order added, or one by name, with its last job's state."""

from __future__ import annotations

import pytest

from emp.redis.calls import Calls
from tests.redis.helpers import claim_job, register, server_ms
from tests.schedules.helpers import add

pytestmark = pytest.mark.anyio


async def test_list_pages_and_shows_the_last_jobs_state(calls: Calls) -> None:
    now = await server_ms(calls)
    for name in ("a", "b", "c"):
        await add(calls, name, next_ms=now + 600_000)
    assert [r["name"] for r in await calls.schedule_list(page=2)] == ["a", "b", "c"]
    assert await calls.schedule_list("zzz") == []
    _, outcome, job = await calls.schedule_fire("b", now=True)
    assert outcome == "pending"
    assert (await calls.schedule_list("b"))[0]["last_status"] == "pending"
    await register(calls, "w1")
    got = await claim_job(calls, "w1")
    assert got.id == job
    await calls.complete(job, got.attempt, "w1")
    row = (await calls.schedule_list("b"))[0]
    assert row["last_job"] == job and row["last_status"] == "completed"
    await calls.client.delete(calls.keys.job(job))
    assert (await calls.schedule_list("b"))[0]["last_status"] == "expired"
