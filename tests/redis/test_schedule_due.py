"""emp_schedule_due: the active schedules whose next occurrence has come, oldest first, with server time."""

from __future__ import annotations

import pytest

from emp.model.schedule import Timing
from emp.redis.calls import Calls
from tests.redis.helpers import server_ms
from tests.schedules.helpers import add

pytestmark = pytest.mark.anyio


async def test_due_lists_only_due_active_schedules(calls: Calls) -> None:
    now = await server_ms(calls)
    await add(calls, "late", next_ms=now - 5000)
    await add(calls, "early", Timing(cron="* * * * *", tz="Europe/Paris"), next_ms=now - 10_000, missed="once")
    await add(calls, "future", next_ms=now + 600_000)
    await add(calls, "paused", next_ms=now - 1, paused=True)
    server_now, rows = await calls.schedule_due(100)
    assert server_now >= now
    assert [r["name"] for r in rows] == ["early", "late"]
    early = rows[0]
    assert (early["kind"], early["cron"], early["tz"], early["missed"]) == ("cron", "* * * * *", "Europe/Paris", "once")
    assert early["next_ms"] == str(now - 10_000) and early["last_fired"] == ""
    _, page = await calls.schedule_due(1)
    assert [r["name"] for r in page] == ["early"]


async def test_nothing_due(calls: Calls) -> None:
    _, rows = await calls.schedule_due(10)
    assert rows == []
