"""emp_complete_many: a group commit of several slots' completes, each fenced and idempotent on its
own, each with its own next claim, events in order, in one call."""

from __future__ import annotations

import json

import pytest
from redis.exceptions import ResponseError

from emp.redis.calls import Calls, ClaimedJob, Completion, NextClaim, NoJob, OutcomeCode
from tests.redis.helpers import LEASE_MS, claim_job, events, job_events, job_hash, register, stale_setup, submit

pytestmark = pytest.mark.anyio


def nxt(request_id: str) -> NextClaim:
    return NextClaim(request_id, LEASE_MS, True, 3)


async def test_completes_each_entry_and_claims_the_next_job_for_each(calls: Calls) -> None:
    for w in ("w1", "w2", "w3"):
        await register(calls, w)
    await submit(calls, "a", "b", "c", "d", "e")
    got = {w: await claim_job(calls, w) for w in ("w1", "w2", "w3")}
    assert [g.id for g in got.values()] == ["a", "b", "c"]
    outcomes = await calls.complete_many(
        [
            Completion("a", got["w1"].attempt, "w1", '{"n":1}', nxt("r1")),
            Completion("b", got["w2"].attempt, "w2", "", nxt("r2"), final_message="saved"),
            Completion("c", got["w3"].attempt, "w3", '{"n":3}', None),
        ]
    )
    assert [o.code for o in outcomes] == [OutcomeCode.OK] * 3
    # Next claims in entry order, by priority/submission order: w1 gets d, w2 gets e; w3 asked none.
    n1, n2 = outcomes[0].next_claim, outcomes[1].next_claim
    assert isinstance(n1, ClaimedJob) and n1.id == "d" and n1.attempt == 1
    assert isinstance(n2, ClaimedJob) and n2.id == "e"
    assert outcomes[2].next_claim is None
    for job_id in ("a", "b", "c"):
        h = await job_hash(calls, job_id)
        assert h["status"] == "completed" and h["progress"] == "100"
    assert json.loads((await job_hash(calls, "a"))["result"]) == {"n": 1}
    assert "result" not in await job_hash(calls, "b")
    assert (await job_hash(calls, "b"))["message"] == "saved"
    assert (await job_hash(calls, "d"))["status"] == "in_progress"
    # Workers: the claiming ones hold their next job; the one that did not claim is idle.
    w1 = await calls.client.hgetall(calls.keys.worker("w1"))
    w3 = await calls.client.hgetall(calls.keys.worker("w3"))
    assert (w1["status"], w1["job"], w1["last_req"], w1["completed"]) == ("busy", "d", "r1", "1")
    assert (w3["status"], w3["job"], w3["completed"]) == ("idle", "", "1")
    assert await calls.client.zscore(calls.keys.leases, "a") is None
    assert await calls.client.zscore(calls.keys.leases, "d") is not None


async def test_events_are_written_in_entry_order(calls: Calls) -> None:
    await register(calls, "w1")
    await register(calls, "w2")
    await submit(calls, "a", "b", "c", "d")
    a, b = await claim_job(calls, "w1"), await claim_job(calls, "w2")
    before = len(await events(calls))
    await calls.complete_many(
        [
            Completion("a", a.attempt, "w1", "", nxt("r1"), final_message="done a"),
            Completion("b", b.attempt, "w2", "", nxt("r2")),
        ]
    )
    after = [(e["type"], e["job"], e["worker"]) for e in (await events(calls))[before:]]
    assert after == [
        ("job_progress", "a", "w1"),
        ("job_completed", "a", "w1"),
        ("job_started", "c", "w1"),
        ("job_completed", "b", "w2"),
        ("job_started", "d", "w2"),
    ]
    assert [e["type"] for e in await job_events(calls, "a")] == ["job_started", "job_progress", "job_completed"]
    progress = (await events(calls, "job_progress", "a"))[0]
    assert json.loads(progress["data"]) == {"progress": 100, "message": "done a"}


async def test_a_stale_entry_is_refused_alone_and_still_claims(calls: Calls) -> None:
    first, second = await stale_setup(calls)  # w1's attempt of a is stale; w2 runs attempt 2
    await register(calls, "w3")
    await submit(calls, "b", "c")
    b = await claim_job(calls, "w3")
    outcomes = await calls.complete_many(
        [
            Completion("a", first.attempt, "w1", '"late"', nxt("r1"), final_message="late"),
            Completion("b", b.attempt, "w3", '"ok"', nxt("r3")),
        ]
    )
    assert outcomes[0].code == OutcomeCode.STALE and outcomes[0].detail == ("in_progress", str(second.attempt))
    assert outcomes[1].code == OutcomeCode.OK
    # The stale entry changed nothing about its job (no result, no message, no event) ...
    h = await job_hash(calls, "a")
    assert (h["status"], h["attempt"], h["worker_id"]) == ("in_progress", str(second.attempt), "w2")
    assert "result" not in h and "message" not in h
    assert await events(calls, "job_completed", "a") == []
    assert await events(calls, "job_progress", "a") == []
    # ... but its claim went through, as emp_complete's does.
    c = outcomes[0].next_claim
    assert isinstance(c, ClaimedJob) and c.id == "c"
    assert isinstance(outcomes[1].next_claim, NoJob)
    assert (await job_hash(calls, "b"))["status"] == "completed"


async def test_a_repeated_call_is_idempotent(calls: Calls) -> None:
    await register(calls, "w1")
    await register(calls, "w2")
    await submit(calls, "a", "b", "c", "d")
    a, b = await claim_job(calls, "w1"), await claim_job(calls, "w2")
    batch = [
        Completion("a", a.attempt, "w1", '{"v":"a"}', nxt("r1")),
        Completion("b", b.attempt, "w2", '{"v":"b"}', nxt("r2")),
    ]
    first = await calls.complete_many(batch)
    counts = {t: len(await events(calls, t)) for t in ("job_completed", "job_started")}
    again = await calls.complete_many(batch)  # a retry after a lost reply: same entries, same request ids
    assert [o.code for o in again] == [OutcomeCode.ALREADY, OutcomeCode.ALREADY]
    assert [o.detail for o in again] == [('{"v":"a"}',), ('{"v":"b"}',)]
    assert [o.next_claim for o in again] == [o.next_claim for o in first]
    assert {t: len(await events(calls, t)) for t in counts} == counts
    for w in ("w1", "w2"):
        assert (await calls.client.hgetall(calls.keys.worker(w)))["completed"] == "1"


async def test_unknown_job_and_empty_batch(calls: Calls) -> None:
    await register(calls, "w")
    [outcome] = await calls.complete_many([Completion("nope", 1, "w", "", nxt("r"))])
    assert outcome.code == OutcomeCode.NOT_FOUND and isinstance(outcome.next_claim, NoJob)
    assert await calls.complete_many([]) == []


async def test_a_wrong_entry_count_is_refused_and_writes_nothing(calls: Calls) -> None:
    await register(calls, "w")
    await submit(calls, "a")
    a = await claim_job(calls, "w")
    with pytest.raises(ResponseError, match="EMP_INVALID"):
        await calls.client.fcall("emp_complete_many", 1, calls.keys.events, calls.p, 2, "a", a.attempt, "w")
    assert (await job_hash(calls, "a"))["status"] == "in_progress"
