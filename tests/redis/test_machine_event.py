"""emp_machine_event: machine lifecycle events, in the stream and on the machine's record."""

from __future__ import annotations

import json

import pytest

from emp.redis.calls import Calls
from tests.redis.helpers import events

pytestmark = pytest.mark.anyio

RECORD = {"status": "ready", "host": {"hostname": "box1"}, "gpus": [{"index": 0, "name": "RTX 4090"}]}


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
