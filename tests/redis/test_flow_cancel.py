"""emp_flow_cancel: every step not ended is cancelled (a running one too); no `always` child runs."""

from __future__ import annotations

from typing import Any

import pytest

from emp.errors import JobNotFound
from emp.model.flow import flow_submission, parse_flow
from emp.redis.calls import Calls, flow_cancel, submit_flow
from tests.redis.helpers import SERVICE, claim_job, job_hash, queue_ids, register

pytestmark = pytest.mark.anyio


def step(name: str, *after: Any) -> dict[str, Any]:
    return {"name": name, "service": SERVICE, "depends_on": list(after)}


async def test_cancel_a_running_flow(calls: Calls) -> None:
    await register(calls, "w1")
    sub = flow_submission(
        parse_flow(
            {"id": "fc", "steps": [step("a"), step("b", "a"), step("c", {"step": "b", "on": "always"}), step("x")]}
        )
    )
    await submit_flow(calls, sub.wires, sub.flow_id, sub.block, 1 << 20)
    a = await claim_job(calls, "w1")
    assert a.id == "fc.a"
    pubsub = calls.client.pubsub()
    await pubsub.subscribe(calls.keys.cancel_channel)
    try:
        assert await flow_cancel(calls, "fc", "user stop") == 4
        statuses = {s: (await job_hash(calls, f"fc.{s}"))["status"] for s in "abcx"}
        assert statuses == dict.fromkeys("abcx", "cancelled")
        assert await queue_ids(calls) == []  # neither x (pending) nor c (always) left in a queue
        msg = None
        for _ in range(10):
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if msg:
                break
        assert msg is not None and msg["data"] == "fc.a"  # the running step is interrupted
    finally:
        await pubsub.aclose()
    # A second cancel finds nothing left to cancel; an unknown flow is an error.
    assert await flow_cancel(calls, "fc") == 0
    with pytest.raises(JobNotFound):
        await flow_cancel(calls, "nope")
