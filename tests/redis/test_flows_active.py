"""emp_flows_active: the flows not ended (the `flows` index kept by _flows.lua), bounded, read-only."""

from __future__ import annotations

import json
from typing import Any

import pytest

from emp.model.flow import flow_submission, parse_flow
from emp.redis.calls import Calls, flow_cancel, flows_active, submit_flow
from tests.redis.helpers import SERVICE, claim_job, register

pytestmark = pytest.mark.anyio


async def send(calls: Calls, doc: dict[str, Any]) -> str:
    sub = flow_submission(parse_flow(doc))
    await submit_flow(calls, sub.wires, sub.flow_id, sub.block, 1 << 20)
    return sub.flow_id


def step(name: str, *after: str) -> dict[str, Any]:
    return {"name": name, "service": SERVICE, "depends_on": list(after), "payload": {}}


async def test_a_chain_is_listed_until_its_last_step_ends(calls: Calls) -> None:
    await register(calls, "w1")
    await send(calls, {"id": "c1", "steps": [step("a"), step("b", "a"), step("c", "b")]})
    got = await flows_active(calls, 10, 20)
    assert got["total"] == 1
    (flow,) = got["flows"]
    assert flow["id"] == "c1" and flow["open"] == 3 and flow["steps_total"] == 3
    assert [(s["name"], s["status"]) for s in flow["steps"]] == [("a", "pending"), ("b", "waiting"), ("c", "waiting")]
    assert flow["steps"][1]["after"] == ["a"]
    for expected_open in (2, 1, 0):
        job = await claim_job(calls, "w1")
        await calls.progress(job.id, job.attempt, "w1", 50, "")
        mid = (await flows_active(calls, 10, 20))["flows"][0]
        assert {s["name"]: s["status"] for s in mid["steps"]}[job.id.split(".")[1]] == "in_progress"
        await calls.complete(job.id, job.attempt, "w1", json.dumps({"ok": 1}))
        got = await flows_active(calls, 10, 20)
        if expected_open:
            assert got["flows"][0]["open"] == expected_open
    assert got["total"] == 0 and not got["flows"]
    assert not await calls.client.exists(calls.keys.flows)


async def test_bounded_oldest_first_open_steps_first_and_cancel_leaves_it(calls: Calls) -> None:
    await send(calls, {"id": "old", "steps": [step("x")]})
    fan = [step("root")] + [step(f"s{i}", "root") for i in range(30)] + [step("join", *[f"s{i}" for i in range(30)])]
    await send(calls, {"id": "fan", "steps": fan})
    got = await flows_active(calls, 1, 5)
    assert got["total"] == 2 and [f["id"] for f in got["flows"]] == ["old"]
    got = await flows_active(calls, 10, 5)
    fan_row = got["flows"][1]
    assert fan_row["id"] == "fan" and fan_row["steps_total"] == 32 and fan_row["open"] == 32
    assert [s["name"] for s in fan_row["steps"]] == ["root", "s0", "s1", "s2", "s3"]
    assert await flow_cancel(calls, "fan") == 32
    got = await flows_active(calls, 10, 5)
    assert got["total"] == 1 and [f["id"] for f in got["flows"]] == ["old"]
    empty = await flows_active(calls, 0, 0)
    assert empty["total"] == 1 and not empty["flows"]
