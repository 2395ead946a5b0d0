"""emp_schedule_pause: a paused schedule leaves the due index; resume puts it back at the given time."""

from __future__ import annotations

import pytest

from emp.errors import JobValidationError
from emp.redis.calls import Calls
from tests.schedules.helpers import add, schedule

pytestmark = pytest.mark.anyio


async def test_pause_then_resume(calls: Calls) -> None:
    assert await add(calls, "s", next_ms=1000)
    assert await calls.schedule_pause("s", True) is False
    assert (await schedule(calls, "s"))["paused"] == "1"
    assert await calls.client.zscore(calls.keys.schedules_due, "s") is None
    assert await calls.schedule_fire("s", expected_next=1000, occurrence=1000, next_ms=2000) == ("PAUSED",)
    assert await calls.schedule_pause("s", True) is True, "pausing twice: it was paused"
    assert await calls.schedule_pause("s", False, next_ms=90_000) is True
    row = await schedule(calls, "s")
    assert row["paused"] == "0" and row["next_ms"] == "90000"
    assert await calls.client.zscore(calls.keys.schedules_due, "s") == 90_000


async def test_unknown_schedule_and_bad_resume(calls: Calls) -> None:
    assert await calls.schedule_pause("nope", True) is None
    assert await add(calls, "s", next_ms=1000, paused=True)
    with pytest.raises(JobValidationError, match="next_ms"):
        await calls.schedule_pause("s", False)
    assert (await schedule(calls, "s"))["paused"] == "1", "nothing written"
