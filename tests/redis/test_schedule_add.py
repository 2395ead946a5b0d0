"""emp_schedule_add: a schedule is stored with its timing, policy and template; bad input writes nothing."""

from __future__ import annotations

import json

import pytest

from emp.errors import JobValidationError
from emp.model.schedule import Timing
from emp.redis.calls import Calls
from tests.redis.helpers import namespace_keys
from tests.schedules.helpers import add, schedule, template

pytestmark = pytest.mark.anyio


async def test_add_stores_the_schedule_and_indexes_it_by_next_occurrence(calls: Calls) -> None:
    tpl = template(payload={"prompt": "a cat"}, priority=70)
    assert await add(calls, "cats", Timing(cron="*/5 * * * *", tz="Europe/Paris"), next_ms=1_000_000, tpl=tpl)
    row = await schedule(calls, "cats")
    assert row["kind"] == "cron" and row["cron"] == "*/5 * * * *" and row["tz"] == "Europe/Paris"
    assert row["next_ms"] == "1000000" and row["paused"] == "0" and row["missed"] == "skip"
    assert json.loads(row["template"]) == tpl and row["service"] == "comfyui"
    assert row["last_status"] == "" and "last_fired" not in row
    assert await calls.client.zscore(calls.keys.schedules_due, "cats") == 1_000_000
    assert await calls.client.zscore(calls.keys.schedules, "cats") is not None


async def test_a_second_add_of_a_name_is_refused_unless_replace_which_keeps_last_fired(calls: Calls) -> None:
    assert await add(calls, "n", next_ms=5000)
    await calls.client.hset(calls.keys.schedule("n"), mapping={"last_fired": "4000", "fired": "7"})
    assert not await add(calls, "n", Timing(every_ms=60_000), next_ms=60_000)
    assert (await schedule(calls, "n"))["every_ms"] == "1000", "refused: unchanged"
    assert await add(calls, "n", Timing(every_ms=60_000), next_ms=60_000, replace=True, missed="once")
    row = await schedule(calls, "n")
    assert (row["every_ms"], row["missed"], row["last_fired"], row["fired"]) == ("60000", "once", "4000", "7")
    assert await calls.client.zscore(calls.keys.schedules_due, "n") == 60_000


async def test_a_paused_add_is_not_due(calls: Calls) -> None:
    assert await add(calls, "p", next_ms=1, paused=True)
    assert (await schedule(calls, "p"))["paused"] == "1"
    assert await calls.client.zscore(calls.keys.schedules_due, "p") is None


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"name": "bad:name"}, "bad name"),
        ({"kind": "hourly"}, "kind"),
        ({"missed": "all"}, "missed"),
        ({"template": "[]"}, "template"),
        ({"next_ms": "soon"}, "next_ms"),
        ({"kind": "every", "every_ms": "0"}, "every_ms"),
    ],
)
async def test_bad_input_is_refused_and_writes_nothing(calls: Calls, change: dict[str, str], reason: str) -> None:
    args = {
        "name": "ok",
        "kind": "every",
        "cron": "",
        "tz": "UTC",
        "every_ms": "1000",
        "missed": "skip",
        "template": json.dumps(template()),
        "next_ms": "1000",
        "replace": "0",
        "paused": "0",
    }
    args.update(change)
    with pytest.raises(JobValidationError, match=reason):
        await calls._fcall("emp_schedule_add", [calls.keys.schedules], calls.p, *args.values())
    assert await namespace_keys(calls) == set()
