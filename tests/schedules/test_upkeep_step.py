"""The upkeep step (emp.coordinator.upkeep.fire_schedules) against the test Redis: due occurrences are
fired, missed ones follow the policy, a replayed pass submits nothing, and it runs inside a pass."""

from __future__ import annotations

import pytest

from emp.coordinator.upkeep import fire_schedules, run_upkeep_pass
from emp.model.schedule import Timing
from emp.redis.calls import Calls, Fence, NotLeader, UpkeepCalls
from tests.redis.helpers import events, server_ms
from tests.schedules.helpers import add, schedule

pytestmark = pytest.mark.anyio


def submitted_ids(evs: list[dict[str, str]]) -> list[str]:
    return [e["job"] for e in evs]


async def test_due_occurrences_within_the_grace_are_each_fired_once(calls: Calls) -> None:
    now = await server_ms(calls)
    first = (now // 1000 - 5) * 1000  # five seconds late: a leader change, say
    await add(calls, "s", next_ms=first)
    up = UpkeepCalls(calls)
    fired, skipped = await fire_schedules(up)
    assert skipped == 0 and fired >= 5
    ids = submitted_ids(await events(calls, "job_submitted"))
    assert ids == [f"sched:s:{first + i * 1000}" for i in range(fired)]
    row = await schedule(calls, "s")
    assert int(row["next_ms"]) == first + fired * 1000 and int(row["next_ms"]) > now - 1000
    again, _ = await fire_schedules(up)
    assert submitted_ids(await events(calls, "job_submitted"))[: len(ids)] == ids, "never again"
    assert len(set(submitted_ids(await events(calls, "job_submitted")))) == fired + again


async def test_missed_occurrences_skip(calls: Calls) -> None:
    now = await server_ms(calls)
    await add(calls, "s", Timing(every_ms=60_000), next_ms=(now // 60_000 - 10) * 60_000)
    fired, skipped = await fire_schedules(UpkeepCalls(calls), grace_ms=1000)
    assert fired == 0 and skipped >= 10
    row = await schedule(calls, "s")
    assert int(row["next_ms"]) > now and int(row["skipped"]) == skipped and "last_fired" not in row


async def test_missed_occurrences_once(calls: Calls) -> None:
    now = await server_ms(calls)
    minute = now // 60_000 * 60_000
    await add(calls, "s", Timing(every_ms=60_000), next_ms=minute - 600_000, missed="once")
    fired, skipped = await fire_schedules(UpkeepCalls(calls), grace_ms=1000)
    assert (fired, skipped) == (1, 0)
    row = await schedule(calls, "s")
    (ev,) = await events(calls, "job_submitted")
    assert ev["job"] == row["last_job"] == f"sched:s:{row['last_fired']}"
    assert int(row["last_fired"]) in (minute - 60_000, minute), "the latest missed occurrence"
    assert int(row["last_coalesced"]) >= 10 and int(row["next_ms"]) > now


async def test_paused_schedules_are_not_fired_and_a_pass_includes_the_step(calls: Calls) -> None:
    now = await server_ms(calls)
    await add(calls, "paused", next_ms=now - 1000, paused=True)
    await add(calls, "active", next_ms=now // 1000 * 1000)
    report = await run_upkeep_pass(UpkeepCalls(calls), slow=False)
    assert report.schedules_fired >= 1 and "schedules_fired" in report.summary()
    assert {e["job"].split(":")[1] for e in await events(calls, "job_submitted")} == {"active"}


async def test_a_fenced_step_raises_not_leader_and_fires_nothing(calls: Calls) -> None:
    now = await server_ms(calls)
    await add(calls, "s", next_ms=now - 1000)
    with pytest.raises(NotLeader):
        await fire_schedules(UpkeepCalls(calls, Fence("upkeep", 999)))
    assert await events(calls, "job_submitted") == []
