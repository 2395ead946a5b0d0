"""emp_machine_report / emp_machine_event / emp_list_machines: machine records, lifecycle, no phantoms."""

from __future__ import annotations

import json

import pytest
from redis.exceptions import ResponseError

from emp.redis.calls import Calls
from tests.redis.conftest import events, wait_for

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


async def test_lifecycle_events_go_to_the_stream_and_the_record(calls: Calls) -> None:
    await calls.machine_event("m1", "machine_startup", {"gpus": 2}, 45_000)
    await calls.machine_event("m1", "machine_step", {"step": "comfyui-gpu0", "duration_ms": 812}, 45_000)
    h = await calls.client.hgetall(calls.keys.machine("m1"))
    assert h["status"] == "starting" and h["last_event"] == "machine_step" and "started_at" in h
    await calls.machine_event("m1", "machine_ready", {"startup_ms": 1500}, 45_000)
    assert (await calls.client.hget(calls.keys.machine("m1"), "status")) == "ready"
    assert [r["id"] for r in await calls.list_machines()] == ["m1"]
    await calls.machine_event("m1", "machine_shutdown", {"reason": "SIGTERM"}, 45_000)
    h = await calls.client.hgetall(calls.keys.machine("m1"))
    assert h["status"] == "offline" and "offline_at" in h
    assert 0 < await calls.client.ttl(calls.keys.machine("m1")) <= 86400, "kept a day for post-mortems"
    assert await calls.list_machines() == [], "a machine that shut down is not live"
    evs = [e for e in await events(calls) if e["type"].startswith("machine_")]
    assert [e["type"] for e in evs] == ["machine_startup", "machine_step", "machine_ready", "machine_shutdown"]
    assert all(e["machine"] == "m1" for e in evs)
    assert json.loads(evs[1]["data"]) == {"step": "comfyui-gpu0", "duration_ms": 812}


async def test_a_report_after_shutdown_makes_it_live_again(calls: Calls) -> None:
    await calls.machine_event("m1", "machine_shutdown", {"reason": "x"}, 45_000)
    await calls.machine_report("m1", 45_000, {"status": "starting"})
    assert [r["id"] for r in await calls.list_machines()] == ["m1"]


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
