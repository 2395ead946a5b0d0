"""emp_flow_get: a flow's record and its steps' jobs; submitting flows through emp_submit's flow block
(chains, fan-out / fan-in, edges on failed / always, references, refusals: nothing written)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from emp.errors import JobValidationError
from emp.model.flow import flow_submission, parse_flow
from emp.redis.calls import Calls, flow_get, submit_flow
from tests.redis.helpers import SERVICE, claim_job, events, job_hash, namespace_keys, register, status, submit

pytestmark = pytest.mark.anyio


async def send(calls: Calls, doc: dict[str, Any]) -> tuple[str, list[str]]:
    sub = flow_submission(parse_flow(doc))
    return sub.flow_id, await submit_flow(calls, sub.wires, sub.flow_id, sub.block, 1 << 20)


def step(name: str, *after: Any, **kw: Any) -> dict[str, Any]:
    return {"name": name, "service": SERVICE, "depends_on": list(after), **kw}


async def run_one(calls: Calls, wid: str, result: dict[str, Any] | None = None) -> str:
    """Claim the next job with `wid` and complete it with `result`; its id."""
    job = await claim_job(calls, wid)
    await calls.complete(job.id, job.attempt, wid, json.dumps(result or {}))
    return job.id


async def test_chain_of_three_runs_in_order_and_resolves_references(calls: Calls) -> None:
    await register(calls, "w1")
    fid, statuses = await send(
        calls,
        {
            "id": "f1",
            "steps": [
                step("a", payload={"n": 1}),
                step("b", "a", payload={"img": {"$from": "a", "path": "result.outputs.0.url"}, "keep": []}),
                step("c", "b", payload={"who": {"$from": "b", "path": "worker_id"}}),
            ],
        },
    )
    assert fid == "f1" and statuses == ["pending", "waiting", "waiting"]
    assert await status(calls, "f1.b") == "waiting"
    assert await run_one(calls, "w1", {"outputs": [{"url": "s3://x/1.png"}]}) == "f1.a"
    # The complete call itself queued b, with its reference resolved in the stored payload.
    assert await status(calls, "f1.b") == "pending"
    b = await claim_job(calls, "w1")
    assert b.id == "f1.b" and b.payload == {"img": "s3://x/1.png", "keep": []}
    await calls.complete(b.id, b.attempt, "w1", "{}")
    c = await claim_job(calls, "w1")
    assert c.payload == {"who": "w1"}
    await calls.complete(c.id, c.attempt, "w1", "{}")
    got = await flow_get(calls, "f1")
    assert got is not None
    record, jobs = got
    assert record["open"] == "0" and "finished_at" in record
    assert {j["status"] for j in jobs.values()} == {"completed"}
    assert 0 < await calls.client.ttl(calls.keys.flow("f1"))
    requeued = [e for e in await events(calls, "job_requeued") if json.loads(e["data"]).get("from") == "waiting"]
    assert [e["job"] for e in requeued] == ["f1.b", "f1.c"]


async def test_fan_out_and_fan_in(calls: Calls) -> None:
    await register(calls, "w1")
    fan = [step(f"v{i}", "gen") for i in range(20)]
    pick = step("pick", *[f"v{i}" for i in range(20)])
    await send(calls, {"id": "f2", "steps": [step("gen"), *fan, pick]})
    assert await run_one(calls, "w1") == "f2.gen"
    ran = {await run_one(calls, "w1") for _ in range(19)}
    assert ran == {f"f2.v{i}" for i in range(20)} - {"f2.v19"} or len(ran) == 19
    assert await status(calls, "f2.pick") == "waiting"
    assert int((await job_hash(calls, "f2.pick"))["pending_parents"]) == 1
    last = ({f"f2.v{i}" for i in range(20)} - ran).pop()
    assert await run_one(calls, "w1") == last
    assert await run_one(calls, "w1") == "f2.pick"


async def test_failed_parent_runs_failed_and_always_children_and_cancels_the_rest(calls: Calls) -> None:
    await register(calls, "w1")
    await send(
        calls,
        {
            "id": "f3",
            "steps": [
                step("a", max_attempts=1),
                step("ok", "a"),
                step("after_ok", "ok", {"step": "a", "on": "always"}),
                step("on_fail", {"step": "a", "on": "failed"}, payload={"why": {"$from": "a", "path": "error"}}),
                step("cleanup", {"step": "a", "on": "always"}),
            ],
        },
    )
    a = await claim_job(calls, "w1")
    await calls.fail(a.id, a.attempt, "w1", "malformed", "bad prompt", 0.0)
    ok = await job_hash(calls, "f3.ok")
    assert ok["status"] == "cancelled" and "a ended failed" in ok["error"]
    # ok's own child could never run either: cancelled in the same call.
    assert (await job_hash(calls, "f3.after_ok"))["status"] == "cancelled"
    assert await status(calls, "f3.on_fail") == "pending"
    assert await status(calls, "f3.cleanup") == "pending"
    got = {(j := await claim_job(calls, "w1")).id: j for _ in range(2)}
    assert got["f3.on_fail"].payload == {"why": "bad prompt"}


async def test_unresolvable_reference_fails_the_child_as_malformed(calls: Calls) -> None:
    await register(calls, "w1")
    await send(
        calls,
        {
            "id": "f4",
            "steps": [
                step("a"),
                step("b", "a", payload={"u": {"$from": "a", "path": "result.nope"}}),
                step("c", "b"),
                step("d", {"step": "b", "on": "failed"}),
            ],
        },
    )
    await run_one(calls, "w1", {"url": "x"})
    b = await job_hash(calls, "f4.b")
    assert b["status"] == "failed" and b["failure_class"] == "malformed"
    assert '"result.nope"' in b["error"] and "nothing at result.nope" in b["error"]
    assert (await job_hash(calls, "f4.c"))["status"] == "cancelled"
    assert await status(calls, "f4.d") == "pending"


async def test_cycle_or_missing_parent_refused_nothing_written(calls: Calls) -> None:
    before = await namespace_keys(calls)
    with pytest.raises(JobValidationError, match="cycle"):
        await send(calls, {"steps": [step("a", "c"), step("b", "a"), step("c", "b")]})
    # The Function refuses a cycle on its own too (a caller that skips the model's check).
    sub = flow_submission(parse_flow({"id": "f5", "steps": [step("a"), step("b", "a")]}))
    block = json.loads(sub.block)
    block["steps"].append({"id": "f5.a", "parents": [["f5.b", "completed", "b"]], "refs": []})
    with pytest.raises(JobValidationError, match="cycle"):
        await submit_flow(calls, sub.wires, "f5", json.dumps(block), 1 << 20)
    block["steps"] = [{"id": "f5.b", "parents": [["nope", "completed", ""]], "refs": []}]
    with pytest.raises(JobValidationError, match="parent nope not found"):
        await submit_flow(calls, sub.wires, "f5", json.dumps(block), 1 << 20)
    assert await namespace_keys(calls) == before


async def test_after_an_existing_job_and_an_ended_one(calls: Calls) -> None:
    from emp.model.flow import after_submission

    await register(calls, "w1")
    await submit(calls, "p")
    sub = after_submission({"id": "k", "service": SERVICE, "payload": {"v": {"$from": "p", "path": "result.v"}}}, ["p"])
    assert await submit_flow(calls, sub.wires, "", sub.block, 1 << 20) == ["waiting"]
    assert await run_one(calls, "w1", {"v": 7}) == "p"
    k = await claim_job(calls, "w1")
    assert k.id == "k" and k.payload == {"v": 7}
    await calls.complete(k.id, k.attempt, "w1", "{}")
    # p has ended completed: a job after it is queued at once; one that needs it failed is refused.
    sub = after_submission(
        {"id": "k2", "service": SERVICE, "payload": {"v": {"$from": "p", "path": "result.v"}}}, ["p"]
    )
    await submit_flow(calls, sub.wires, "", sub.block, 1 << 20)
    assert await status(calls, "k2") == "pending"
    assert (await claim_job(calls, "w1")).payload == {"v": 7}
    sub = after_submission({"id": "k3", "service": SERVICE}, ["p"], on="failed")
    with pytest.raises(JobValidationError, match="can never run"):
        await submit_flow(calls, sub.wires, "", sub.block, 1 << 20)


async def test_no_such_flow(calls: Calls) -> None:
    assert await flow_get(calls, "nope") is None
