"""emp_mark_unworkable: flag a signature no live worker can run and move its pending jobs aside."""

from __future__ import annotations

import json

import pytest

from emp.redis.calls import Calls
from tests.redis.helpers import (
    SERVICE,
    UNWORKABLE_REQ,
    UNWORKABLE_SIG,
    caps_with,
    claim_ids,
    events,
    job_events,
    job_hash,
    register,
    submit,
    unworkable_queue,
)

pytestmark = pytest.mark.anyio

REQ, SIG, uq = UNWORKABLE_REQ, UNWORKABLE_SIG, unworkable_queue


async def test_mark_is_refused_within_the_grace_period(calls: Calls) -> None:
    await submit(calls, {"id": "a", "requirements": REQ})
    assert await calls.mark_unworkable(SERVICE, SIG, 60_000) == ("TOO_SOON", 0, 0)
    assert (await job_hash(calls, "a"))["status"] == "pending"
    assert await calls.client.hget(calls.keys.sigs(SERVICE), SIG) is not None
    assert not await calls.client.exists(calls.keys.usigs(SERVICE))


async def test_mark_of_an_unknown_signature(calls: Calls) -> None:
    assert await calls.mark_unworkable(SERVICE, "0123456789abcdef", 0) == ("NOT_FOUND", 0, 0)
    assert await calls.revive_unworkable(SERVICE, "0123456789abcdef") == ("NOT_FOUND", 0, 0)


async def test_mark_flags_the_signature_and_moves_its_jobs(calls: Calls) -> None:
    await submit(
        calls,
        {"id": "a", "requirements": REQ, "workflow_id": "wf", "customer_id": "c"},
        {"id": "b", "requirements": REQ},
        "other",
    )
    assert await calls.mark_unworkable(SERVICE, SIG, 0) == ("OK", 2, 0)
    for i in "ab":
        assert (await job_hash(calls, i))["status"] == "unworkable"
        assert await calls.client.zscore(calls.keys.unworkable, i) is not None
        assert [e["type"] for e in await job_events(calls, i)] == ["job_unworkable"]
    assert await calls.client.zcard(uq(calls)) == 2
    assert await calls.client.zcard(calls.keys.queue(SERVICE, SIG)) == 0
    assert not [m for m in await calls.client.zrange(calls.keys.heads(SERVICE), 0, -1) if m.endswith(SIG)]
    assert await calls.client.zcard(calls.keys.prefix + f"qwf:{SERVICE}:wf") == 0
    assert await calls.client.zcard(calls.keys.prefix + f"qc:{SERVICE}:c") == 0
    assert await calls.client.hget(calls.keys.sigs(SERVICE), SIG) is None
    assert await calls.client.hget(calls.keys.usigs(SERVICE), SIG) == json.dumps(
        {"p": {"hardware.gpu_memory_gb": 80}}, separators=(",", ":")
    )
    assert (await job_hash(calls, "other"))["status"] == "pending"
    data = json.loads((await events(calls, "job_unworkable"))[0]["data"])
    assert "no live worker" in data["reason"]
    # New jobs of the flagged signature go straight to unworkable.
    assert await submit(calls, {"id": "c", "requirements": REQ}) == ["unworkable"]


async def test_mark_moves_one_page_per_call(calls: Calls) -> None:
    await submit(calls, *[{"id": f"j{i}", "requirements": REQ} for i in range(5)])
    assert await calls.mark_unworkable(SERVICE, SIG, 0, page=2) == ("OK", 2, 3)
    assert await calls.mark_unworkable(SERVICE, SIG, 0, page=2) == ("OK", 2, 1)
    assert await calls.mark_unworkable(SERVICE, SIG, 0, page=2) == ("OK", 1, 0)
    assert await calls.client.zcard(uq(calls)) == 5


async def test_a_reviving_signature_can_be_marked_again(calls: Calls) -> None:
    await submit(calls, *[{"id": f"j{i}", "requirements": REQ} for i in range(3)])
    await calls.mark_unworkable(SERVICE, SIG, 0)
    await calls.revive_unworkable(SERVICE, SIG, page=1)
    assert await calls.mark_unworkable(SERVICE, SIG, 0) == ("OK", 1, 0)
    assert not (await calls.client.hget(calls.keys.usigs(SERVICE), SIG)).startswith("~")
    assert await calls.client.zcard(uq(calls)) == 3
    assert await submit(calls, {"id": "n", "requirements": REQ}) == ["unworkable"]


async def test_claim_of_a_matching_worker_before_revive_gets_nothing_unworkable(calls: Calls) -> None:
    await register(calls, "big", caps=caps_with(hardware={"gpu_memory_gb": 80}))
    await submit(calls, {"id": "a", "requirements": REQ})
    await calls.mark_unworkable(SERVICE, SIG, 0)
    assert await claim_ids(calls, "big") == []
    assert (await job_hash(calls, "a"))["status"] == "unworkable"
