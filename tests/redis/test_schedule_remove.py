"""emp_schedule_remove: the schedule and its index entries go; the jobs it submitted stay."""

from __future__ import annotations

import pytest

from emp.redis.calls import Calls
from tests.redis.helpers import server_ms, status
from tests.schedules.helpers import add

pytestmark = pytest.mark.anyio


async def test_remove_deletes_the_schedule_but_not_its_jobs(calls: Calls) -> None:
    assert await add(calls, "r", next_ms=await server_ms(calls) + 60_000)
    reply = await calls.schedule_fire("r", now=True)
    assert reply[1] == "pending"
    assert await calls.schedule_remove("r")
    assert await calls.schedule_list("r") == [] and await calls.schedule_list() == []
    assert await calls.client.exists(calls.keys.schedule("r")) == 0
    assert await calls.client.zscore(calls.keys.schedules_due, "r") is None
    assert await status(calls, reply[2]) == "pending"
    assert not await calls.schedule_remove("r"), "a second remove finds nothing"
