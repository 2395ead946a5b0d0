"""Flows end to end: real redis-server, real `emp worker` processes (simulation service).

A simulation job returns its payload's ``result``; ``fail`` makes it fail with that class. Each test
checks the stored states and, through the event stream, that every step ended exactly once.
"""

from __future__ import annotations

import json
import signal
from typing import Any

import pytest

from emp.client import Client
from emp.errors import JobValidationError
from emp.model.flow import FlowState
from tests.integration.helpers import WorkerProcs, wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]

FAST = {"steps": 2, "step_ms": 5}


def step(name: str, *after: Any, **payload: Any) -> dict[str, Any]:
    return {"name": name, "service": "simulation", "depends_on": list(after), "payload": {**FAST, **payload}}


async def ended(client: Client, fid: str) -> FlowState:
    async def done() -> FlowState | None:
        st = await client.flow(fid)
        return st if st is not None and st.status != "running" else None

    return await wait_for(done, timeout=45, what=f"flow {fid} to end")


async def end_events(client: Client) -> dict[str, list[str]]:
    """Per job: the terminal events in the namespace's stream."""
    calls = await client.calls()
    out: dict[str, list[str]] = {}
    for _, f in await calls.client.xrange(calls.keys.events):
        if f.get("type") in ("job_completed", "job_failed", "job_cancelled"):
            out.setdefault(f["job"], []).append(f["type"])
    return out


async def test_chain_of_three_with_references(client: Client, workers: WorkerProcs) -> None:
    workers.start("--id", "w1")
    fid = await client.submit_flow(
        {
            "id": "chain",
            "steps": [
                step("gen", result={"outputs": [{"url": "s3://b/1.png"}]}),
                step("up", "gen", src={"$from": "gen", "path": "result.outputs.0.url"}, result={"url": "s3://b/2.png"}),
                step("cap", "up", src={"$from": "up", "path": "result.url"}, result="done"),
            ],
        }
    )
    st = await ended(client, fid)
    assert st.status == "completed" and [s.name for s in st.steps] == ["gen", "up", "cap"]
    up, cap = await client.get("chain.up"), await client.get("chain.cap")
    assert up is not None and up.payload["src"] == "s3://b/1.png"
    assert cap is not None and cap.payload["src"] == "s3://b/2.png"
    assert up.started_at is not None and cap.started_at is not None and up.finished_at is not None
    assert cap.started_at >= up.finished_at  # in order
    assert {k: v for k, v in (await end_events(client)).items()} == {
        f"chain.{n}": ["job_completed"] for n in ("gen", "up", "cap")
    }


async def test_fan_out_of_20_and_fan_in(client: Client, workers: WorkerProcs) -> None:
    workers.start("--id", "w1", "--concurrency", "4")
    workers.start("--id", "w2", "--concurrency", "4")
    fan = [step(f"v{i}", "gen", result={"score": i}) for i in range(20)]
    pick = step("pick", *[f"v{i}" for i in range(20)], best={"$from": "v7", "path": "result.score"})
    fid = await client.submit_flow({"id": "fan", "steps": [step("gen"), *fan, pick]})
    st = await ended(client, fid)
    assert st.status == "completed" and len(st.steps) == 22
    jobs = {s.name: await client.get(s.id) for s in st.steps}
    last_variant = max(j.finished_at or 0 for n, j in jobs.items() if j and n.startswith("v"))
    pick_job = jobs["pick"]
    assert pick_job is not None and (pick_job.started_at or 0) >= last_variant
    assert pick_job.payload["best"] == 7
    assert all(v == ["job_completed"] for v in (await end_events(client)).values())


async def test_failing_parent_runs_failed_and_always_children(client: Client, workers: WorkerProcs) -> None:
    workers.start("--id", "w1", "--concurrency", "2")
    fid = await client.submit_flow(
        {
            "id": "ff",
            "steps": [
                {**step("a", fail="malformed"), "max_attempts": 1},
                step("next", "a"),
                step("on_fail", {"step": "a", "on": "failed"}, why={"$from": "a", "path": "failure_class"}),
                step("cleanup", {"step": "a", "on": "always"}),
            ],
        }
    )
    st = await ended(client, fid)
    by = {s.name: s for s in st.steps}
    assert by["a"].status == "failed" and by["next"].status == "cancelled"
    assert by["next"].error is not None and "a ended failed" in by["next"].error
    assert by["on_fail"].status == "completed" and by["cleanup"].status == "completed"
    on_fail = await client.get("ff.on_fail")
    assert on_fail is not None and on_fail.payload["why"] == "malformed"
    assert st.status == "failed"


async def test_cancelled_flow_interrupts_the_running_step(client: Client, workers: WorkerProcs) -> None:
    workers.start("--id", "w1")
    fid = await client.submit_flow(
        {
            "id": "cx",
            "steps": [
                {**step("long"), "payload": {"steps": 600, "step_ms": 50}},
                step("b", "long"),
                step("c", {"step": "b", "on": "always"}),
            ],
        }
    )

    async def running() -> bool:
        job = await client.get("cx.long")
        return job is not None and str(job.status) == "in_progress"

    await wait_for(running, what="the first step to run")
    assert await client.cancel_flow(fid) == 3
    st = await ended(client, fid)
    assert {s.status for s in st.steps} == {"cancelled"}
    # The worker hears the cancel and goes back to idle (the running step was interrupted).
    calls = await client.calls()

    async def idle() -> bool:
        return bool(await calls.client.hget(calls.keys.worker("w1"), "status") == "idle")

    await wait_for(idle, what="the worker to drop the cancelled step")
    assert all(v == ["job_cancelled"] for v in (await end_events(client)).values())


async def test_unresolvable_reference_fails_the_child_naming_it(client: Client, workers: WorkerProcs) -> None:
    workers.start("--id", "w1")
    fid = await client.submit_flow(
        {"id": "ur", "steps": [step("a", result={"x": 1}), step("b", "a", y={"$from": "a", "path": "result.nope.0"})]}
    )
    st = await ended(client, fid)
    b = {s.name: s for s in st.steps}["b"]
    assert b.status == "failed" and b.failure_class == "malformed"
    assert b.error is not None and "result.nope.0" in b.error


async def test_cycle_refused_nothing_written(client: Client) -> None:
    calls = await client.calls()
    with pytest.raises(JobValidationError, match="a cycle: a -> c -> b -> a|cycle"):
        await client.submit_flow({"id": "cy", "steps": [step("a", "c"), step("b", "a"), step("c", "b")]})
    with pytest.raises(JobValidationError, match="no step named 'zz'"):
        await client.submit_flow({"id": "cy", "steps": [step("a", "zz")]})
    assert await calls.client.keys(calls.keys.prefix + "*") == []


async def test_worker_sigkilled_mid_flow_every_step_ends_once(client: Client, workers: WorkerProcs) -> None:
    victim = workers.start("--id", "victim", "--lease-ttl", "1")
    fid = await client.submit_flow(
        {
            "id": "kill",
            "steps": [
                step("a", result={"v": 1}),
                {
                    **step("mid", "a", v={"$from": "a", "path": "result.v"}),
                    "payload": {"steps": 40, "step_ms": 50, "v": {"$from": "a", "path": "result.v"}, "result": "mid"},
                },
                *[step(f"t{i}", "mid") for i in range(5)],
                step("end", *[f"t{i}" for i in range(5)]),
            ],
        }
    )

    async def mid_running() -> bool:
        job = await client.get("kill.mid")
        return job is not None and str(job.status) == "in_progress"

    await wait_for(mid_running, what="the middle step to run")
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    workers.start("--id", "rescuer", "--lease-ttl", "5", "--concurrency", "3")
    st = await ended(client, fid)
    assert st.status == "completed"
    mid = await client.get("kill.mid")
    assert mid is not None and mid.attempt == 2 and mid.lost == 1 and mid.payload["v"] == 1
    ends = await end_events(client)
    assert sorted(ends) == sorted(s.id for s in st.steps)
    assert all(v == ["job_completed"] for v in ends.values()), json.dumps(ends)


async def test_waiting_steps_are_counted_and_listed_until_they_run_or_are_cancelled(client: Client) -> None:
    """No worker: the first step stays pending, its children wait; emp jobs count / list (and the
    dashboards, which read the same counts) show them as waiting; cancelling the flow empties it."""
    fid = await client.submit_flow(
        {"id": "idx", "steps": [step("a"), step("b", "a"), step("c", "a"), step("d", "b", "c")]}
    )
    counts = await client.count()
    assert counts["pending"] == 1 and counts["waiting"] == 3
    assert (await client.count(service="simulation"))["waiting"] == 3
    calls = await client.calls()
    rows, cursor = await calls.list_jobs("waiting")
    assert [r["id"] for r in rows] == ["idx.b", "idx.c", "idx.d"] and cursor == ""
    everything, _ = await calls.list_jobs("", limit=100)
    assert [r["id"] for r in everything] == ["idx.a", "idx.b", "idx.c", "idx.d"]
    assert await client.cancel_flow(fid) == 4
    counts = await client.count()
    assert counts["waiting"] == 0 and counts["pending"] == 0 and counts["cancelled"] == 4
    assert await calls.client.zcard(calls.keys.waiting) == 0
