"""emp_complete: success, idempotent, fenced; optionally claims the next job in the same call."""

from __future__ import annotations

import json

import pytest

from emp import defaults
from emp.redis.calls import Calls, ClaimedJob, NextClaim, NoJob, NotRegistered, Outcome, OutcomeCode
from tests.redis.helpers import (
    LEASE_MS,
    claim_job,
    events,
    job_events,
    job_hash,
    job_state,
    register,
    server_ms,
    stale_setup,
    submit,
)

pytestmark = pytest.mark.anyio


async def test_complete_ends_the_job(calls: Calls) -> None:
    await register(calls, "w")
    await submit(calls, "a")
    got = await claim_job(calls, "w")
    t0 = await server_ms(calls)
    outcome = await calls.complete("a", got.attempt, "w", json.dumps({"url": "file:///out.png"}))
    assert outcome == Outcome(OutcomeCode.OK) and outcome.next_claim is None
    h = await job_hash(calls, "a")
    assert h["status"] == "completed" and h["progress"] == "100" and int(h["finished_at"]) >= t0
    assert json.loads(h["result"]) == {"url": "file:///out.png"}
    assert await calls.client.zscore(calls.keys.leases, "a") is None
    assert await calls.client.zscore(calls.keys.done("completed"), "a") == int(h["finished_at"])
    w = await calls.client.hgetall(calls.keys.worker("w"))
    assert w["status"] == "idle" and w["job"] == "" and w["completed"] == "1"
    # Kept for the retention period, then gone with its payload and events.
    for key in (calls.keys.job("a"), calls.keys.payload("a"), calls.keys.job_events("a")):
        ttl = await calls.client.ttl(key)
        assert defaults.RETENTION_S - 5 <= ttl <= defaults.RETENTION_S, key
    ev = (await events(calls, "job_completed"))[0]
    assert (ev["job"], ev["worker"], ev["attempt"]) == ("a", "w", "1")
    assert [e["type"] for e in await job_events(calls, "a")] == ["job_started", "job_completed"]


async def test_complete_records_the_final_progress_in_the_same_call(calls: Calls) -> None:
    await register(calls, "w")
    await submit(calls, "a")
    got = await claim_job(calls, "w")
    await calls.complete("a", got.attempt, "w", "", final_message="saved 2 images")
    h = await job_hash(calls, "a")
    assert h["progress"] == "100" and h["message"] == "saved 2 images"
    evs = await job_events(calls, "a")
    assert [e["type"] for e in evs] == ["job_started", "job_progress", "job_completed"]
    assert json.loads(evs[1]["data"]) == {"progress": 100, "message": "saved 2 images"}


async def test_stale_complete_records_no_final_progress(calls: Calls) -> None:
    await register(calls, "w")
    await submit(calls, "a")
    got = await claim_job(calls, "w")
    await calls.cancel("a", "user")
    assert (await calls.complete("a", got.attempt, "w", "", final_message="done")).code == OutcomeCode.STALE
    assert "job_progress" not in [e["type"] for e in await job_events(calls, "a")]
    assert (await job_hash(calls, "a")).get("message", "") != "done"


async def test_complete_twice_returns_already_with_the_stored_result(calls: Calls) -> None:
    await register(calls, "w")
    await submit(calls, "a")
    got = await claim_job(calls, "w")
    await calls.complete("a", got.attempt, "w", '{"n":1}')
    before = await job_state(calls, "a")
    outcome = await calls.complete("a", got.attempt, "w", '{"n":2}')
    assert outcome == Outcome("ALREADY", ('{"n":1}',))
    assert await job_state(calls, "a") == before
    assert len(await events(calls, "job_completed")) == 1


async def test_complete_of_an_assigned_job_sets_started_at(calls: Calls) -> None:
    await register(calls, "w")
    await submit(calls, "a")
    got = await claim_job(calls, "w", start=False)
    await calls.complete("a", got.attempt, "w")
    h = await job_hash(calls, "a")
    assert h["status"] == "completed" and h["started_at"] == h["finished_at"] and "result" not in h


async def test_stale_complete_is_refused_and_changes_nothing(calls: Calls) -> None:
    first, second = await stale_setup(calls)
    before = await job_state(calls, "a")
    w2 = await calls.client.hgetall(calls.keys.worker("w2"))
    outcome = await calls.complete("a", first.attempt, "w1", '{"late":true}')
    assert outcome.code == OutcomeCode.STALE and outcome.detail[1] == str(second.attempt)
    assert await job_state(calls, "a") == before
    assert await calls.client.hgetall(calls.keys.worker("w2")) == w2


async def test_complete_by_another_worker_is_stale(calls: Calls) -> None:
    await register(calls, "w")
    await submit(calls, "a")
    got = await claim_job(calls, "w")
    before = await job_state(calls, "a")
    assert (await calls.complete("a", got.attempt, "intruder")).code == OutcomeCode.STALE
    assert await job_state(calls, "a") == before


async def test_complete_after_cancel_is_stale(calls: Calls) -> None:
    await register(calls, "w")
    await submit(calls, "a")
    got = await claim_job(calls, "w")
    await calls.cancel("a")
    outcome = await calls.complete("a", got.attempt, "w")
    assert outcome.code == OutcomeCode.STALE and outcome.detail[0] == "cancelled"
    assert (await job_hash(calls, "a"))["status"] == "cancelled"


async def test_complete_of_an_unknown_job(calls: Calls) -> None:
    assert (await calls.complete("nope", 1, "w")).code == OutcomeCode.NOT_FOUND


async def test_complete_with_next_claim_returns_the_next_job(calls: Calls) -> None:
    await register(calls, "w")
    await submit(calls, "a", "b")
    a = await claim_job(calls, "w")
    outcome = await calls.complete("a", a.attempt, "w", "", NextClaim("r2", LEASE_MS, True, 3))
    nxt = outcome.next_claim
    assert outcome.code == "OK"
    assert isinstance(nxt, ClaimedJob) and nxt.id == "b" and nxt.attempt == 1
    assert (await job_hash(calls, "b"))["status"] == "in_progress"
    w = await calls.client.hgetall(calls.keys.worker("w"))
    assert w["status"] == "busy" and w["job"] == "b" and w["last_req"] == "r2"
    # A retried complete (lost reply) with the same request id: ALREADY, and the same next job.
    outcome = await calls.complete("a", a.attempt, "w", "", NextClaim("r2", LEASE_MS, True, 3))
    assert outcome.code == "ALREADY" and outcome.next_claim == nxt
    assert len(await events(calls, "job_started", "b")) == 1
    # Nothing left: the next claim is empty and the worker is idle.
    last = (await calls.complete("b", nxt.attempt, "w", "", NextClaim("r3", LEASE_MS, True, 3))).next_claim
    assert isinstance(last, NoJob)
    w = await calls.client.hgetall(calls.keys.worker("w"))
    assert w["status"] == "idle" and w["job"] == ""


async def test_complete_with_next_claim_counts_once_whatever_the_claim_finds(calls: Calls) -> None:
    # The count rides in the claim's own write of the worker record: a job, nothing, or a worker
    # that went offline in between must each count the completion exactly once.
    await register(calls, "w")
    await submit(calls, "a", "b")
    a = await claim_job(calls, "w")
    b = (await calls.complete("a", a.attempt, "w", "", NextClaim("r2", LEASE_MS, True, 3))).next_claim
    assert isinstance(b, ClaimedJob)
    assert (await calls.client.hget(calls.keys.worker("w"), "completed")) == "1"
    # A retried complete (same attempt, same request id) is ALREADY: not counted again.
    await calls.complete("a", a.attempt, "w", "", NextClaim("r2", LEASE_MS, True, 3))
    assert (await calls.client.hget(calls.keys.worker("w"), "completed")) == "1"
    empty = (await calls.complete("b", b.attempt, "w", "", NextClaim("r3", LEASE_MS, True, 3))).next_claim
    assert isinstance(empty, NoJob)
    assert (await calls.client.hget(calls.keys.worker("w"), "completed")) == "2"
    await submit(calls, "c")
    c = await claim_job(calls, "w")
    await calls.worker_offline("w", "test")
    gone = (await calls.complete("c", c.attempt, "w", "", NextClaim("r4", LEASE_MS, True, 3))).next_claim
    assert isinstance(gone, NotRegistered)
    assert (await calls.client.hget(calls.keys.worker("w"), "completed")) == "3"


async def test_stale_complete_still_carries_the_next_claim(calls: Calls) -> None:
    first, _ = await stale_setup(calls)
    await submit(calls, "b")
    outcome = await calls.complete("a", first.attempt, "w1", "", NextClaim("r", LEASE_MS, True, 3))
    nxt = outcome.next_claim
    assert outcome.code == OutcomeCode.STALE and isinstance(nxt, ClaimedJob) and nxt.id == "b"
