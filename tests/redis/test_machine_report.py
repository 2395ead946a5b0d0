"""emp_machine_report: a machine's record and liveness; bad reports and events are refused."""

from __future__ import annotations

import pytest
from redis.exceptions import ResponseError

from emp.redis.calls import Calls
from tests.polling import wait_for
from tests.redis.helpers import events

pytestmark = pytest.mark.anyio

RECORD = {"status": "ready", "host": {"hostname": "box1"}, "gpus": [{"index": 0, "name": "RTX 4090"}]}


async def test_report_makes_the_machine_live_with_its_record(calls: Calls) -> None:
    await calls.machine_report("m1", 45_000, RECORD)
    [row] = await calls.list_machines()
    assert row["id"] == "m1" and row["status"] == "ready" and row["record"] == RECORD
    assert 0 < await calls.client.pttl(calls.keys.machine("m1")) <= 45_000
    assert await events(calls) == [], "a heartbeat writes no event"


async def test_a_machine_that_stops_reporting_drops_out(calls: Calls) -> None:
    await calls.machine_report("gone", 50, RECORD)
    await calls.machine_report("alive", 60_000, RECORD)

    async def only_alive() -> bool:
        return [r["id"] for r in await calls.list_machines()] == ["alive"]

    await wait_for(only_alive, what="the silent machine to lapse")
    await calls.machine_report("alive", 60_000, RECORD)  # the next report sweeps the index
    assert await calls.client.zscore(calls.keys.machines, "gone") is None
    # ... and says so: with no coordinator running, views still learn that the machine went away.
    gone = await events(calls, "machine_shutdown")
    assert [(e["machine"], e["data"]) for e in gone] == [("gone", '{"reason":"report lapsed"}')]
    assert (await calls.client.hgetall(calls.keys.machine("gone")))["status"] == "offline"
    await calls.machine_report("alive", 60_000, RECORD)
    assert len(await events(calls, "machine_shutdown")) == 1, "marked once"


@pytest.mark.parametrize(
    ("fn", "args", "what"),
    [
        ("emp_machine_report", ["", 1000, "{}"], "machine id"),
        ("emp_machine_report", ["m", 0, "{}"], "ttl_ms"),
        ("emp_machine_report", ["m", 1000, "[x"], "record"),
        ("emp_machine_event", ["m", "machine_exploded", "{}", 1000], "event type"),
        ("emp_machine_event", ["m", "machine_ready", "nope", 1000], "data"),
        ("emp_machine_event", ["", "machine_ready", "{}", 1000], "machine id"),
    ],
)
async def test_bad_calls_are_refused_and_change_nothing(calls: Calls, fn: str, args: list, what: str) -> None:
    mid = args[0] or "x"
    with pytest.raises(ResponseError, match=what):
        await calls.client.fcall(fn, 2, calls.keys.machine(mid), calls.keys.machines, calls.p, *args)
    assert not await calls.client.exists(calls.keys.machine(mid))
    assert await calls.list_machines() == [] and await events(calls) == []
