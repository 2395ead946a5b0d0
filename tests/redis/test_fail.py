"""emp_fail: the failure class decides (twin of emp/model/retry.py); fenced; may claim the next job."""

from __future__ import annotations

import json

import pytest

from emp import defaults
from emp.model import retry as policy
from emp.model.matching import JobView
from emp.redis.calls import Calls, ClaimedJob, NextClaim, NoJob, Outcome, OutcomeCode
from tests.polling import wait_for
from tests.redis.helpers import (
    LEASE_MS,
    SERVICE,
    caps_with,
    claim,
    claim_ids,
    claim_job,
    events,
    job_events,
    job_hash,
    job_state,
    register,
    server_ms,
    sig_of,
    stale_setup,
    submit,
)

pytestmark = pytest.mark.anyio


async def running(calls: Calls, job_id: str = "a", worker: str = "w", **fields: object) -> ClaimedJob:
    await register(calls, worker)
    await submit(calls, {"id": job_id, **fields})
    return await claim_job(calls, worker)


async def test_malformed_fails_after_one_attempt(calls: Calls) -> None:
    got = await running(calls, max_attempts=5)
    outcome = await calls.fail("a", got.attempt, "w", "malformed", "bad prompt: missing node 7", 0.5)
    assert outcome == Outcome(OutcomeCode.FAILED) and outcome.next_claim is None
    h = await job_hash(calls, "a")
    assert h["status"] == "failed" and h["failure_class"] == "malformed" and h["tries"] == "1"
    assert h["error"] == "bad prompt: missing node 7"
    assert await calls.client.zscore(calls.keys.done("failed"), "a") == int(h["finished_at"])
    assert await calls.client.zscore(calls.keys.leases, "a") is None
    assert 0 < await calls.client.ttl(calls.keys.job("a")) <= defaults.RETENTION_S
    hist = json.loads(h["history"])
    assert len(hist) == 1 and hist[0]["failure_class"] == "malformed" and hist[0]["outcome"] == "failed"
    ev = (await events(calls, "job_failed"))[0]
    assert json.loads(ev["data"])["failure_class"] == "malformed"
    w = await calls.client.hgetall(calls.keys.worker("w"))
    assert w["status"] == "idle" and w["job"] == "" and w["failed"] == "1"


@pytest.mark.parametrize("r", [0.0, 0.3, 0.999])
async def test_transient_retries_through_scheduled_with_backoff_and_jitter(calls: Calls, r: float) -> None:
    got = await running(calls)
    t0 = await server_ms(calls)
    outcome = await calls.fail("a", got.attempt, "w", "transient", "HTTP 502", r)
    t1 = await server_ms(calls)
    delay = int(outcome.detail[0])
    assert outcome.code == "RETRY" and outcome.detail[1] == "scheduled"
    base = defaults.RETRY_BASE_MS  # first counted try: base * 2^0
    assert base * (1 - defaults.RETRY_JITTER * r) - 1 <= delay <= base * (1 - defaults.RETRY_JITTER * r)
    assert delay == policy.backoff_ms(0, r), "Lua and emp.model.retry agree"
    h = await job_hash(calls, "a")
    assert h["status"] == "scheduled" and h["tries"] == "1" and h["failure_class"] == "transient"
    assert "worker_id" not in h
    run_at = await calls.client.zscore(calls.keys.scheduled, "a")
    assert t0 + delay <= run_at == int(h["run_at"]) <= t1 + delay
    assert await calls.client.zcard(calls.keys.queue(SERVICE, sig_of(SERVICE))) == 0
    ev = (await job_events(calls, "a"))[-1]
    assert ev["type"] == "job_retry"
    assert json.loads(ev["data"]) == {"failure_class": "transient", "delay_ms": delay, "error": "HTTP 502"}
    assert await calls.client.hget(calls.keys.stats, "retried") == "1"


async def test_a_retried_job_keeps_its_place_and_backoff_doubles(calls: Calls) -> None:
    await register(calls, "w")
    await submit(calls, "r", "later1")
    got = await claim_job(calls, "w")
    assert got.id == "r"
    outcome = await calls.fail("r", got.attempt, "w", "transient", "timeout talking to comfyui", 0.999999)
    delay = int(outcome.detail[0])
    assert 500 <= delay < 501
    await submit(calls, "later2")

    async def promoted() -> bool:
        p, _, _ = await calls.maintain(100, 3)
        return p > 0

    await wait_for(promoted, timeout=5, what="the retry backoff to fall due")
    assert (await job_hash(calls, "r"))["status"] == "pending"
    assert [e["type"] for e in await job_events(calls, "r")][-1] == "job_requeued"
    again = await claim_job(calls, "w")
    assert again.id == "r", "the retried job goes back to its place, ahead of jobs submitted after it"
    assert again.attempt == 2
    outcome = await calls.fail("r", again.attempt, "w", "transient", "again", 0.0)
    assert outcome == Outcome("RETRY", (str(2 * defaults.RETRY_BASE_MS), "scheduled"))
    assert await claim_ids(calls, "w") == ["later1", "later2"]


async def test_exhausting_max_attempts_fails(calls: Calls) -> None:
    got = await running(calls, max_attempts=1)
    outcome = await calls.fail("a", got.attempt, "w", "transient", "boom", 0.0)
    assert outcome == Outcome("FAILED")
    h = await job_hash(calls, "a")
    assert h["status"] == "failed" and h["tries"] == "1" and h["failure_class"] == "transient"
    assert await calls.client.zscore(calls.keys.scheduled, "a") is None


async def test_counted_tries_add_up_across_classes(calls: Calls) -> None:
    await register(calls, "w2")
    got = await running(calls, max_attempts=2)
    out1 = await calls.fail("a", got.attempt, "w", "resource_exhausted", "OOM", 0.0)
    assert out1.code == "RETRY"
    again = await claim_job(calls, "w2")
    out2 = await calls.fail("a", again.attempt, "w2", "timeout", "took too long", 0.0)
    assert out2 == Outcome("FAILED")
    h = await job_hash(calls, "a")
    assert h["tries"] == "2" and h["failure_class"] == "timeout"
    assert [x["failure_class"] for x in json.loads(h["history"])] == ["resource_exhausted", "timeout"]


async def test_resource_exhausted_is_pending_at_once_avoiding_the_worker(calls: Calls) -> None:
    await register(calls, "other")
    got = await running(calls)
    outcome = await calls.fail("a", got.attempt, "w", "resource_exhausted", "CUDA OOM", 0.7)
    assert outcome == Outcome("RETRY", ("0", "pending"))
    h = await job_hash(calls, "a")
    assert h["status"] == "pending" and h["tries"] == "1" and json.loads(h["avoid_workers"]) == ["w"]
    assert "gpu_gb_over" not in h, "the other worker has no more memory: no floor"
    members = await calls.client.zrange(calls.keys.queue(SERVICE, sig_of(SERVICE)), 0, -1)
    assert members == [f"{int(h['seq']):012x}!a"]


async def test_service_unavailable_retries_without_counting_a_try(calls: Calls) -> None:
    got = await running(calls, max_attempts=1)
    outcome = await calls.fail("a", got.attempt, "w", "service_unavailable", "comfyui is down", 0.5)
    assert outcome == Outcome("RETRY", (str(defaults.UNAVAILABLE_DELAY_MS), "scheduled"))
    h = await job_hash(calls, "a")
    assert h["status"] == "scheduled" and "tries" not in h and h["unavailable"] == "1"


async def test_service_unavailable_fails_after_max_unavailable(calls: Calls) -> None:
    got = await running(calls)
    await calls.client.hset(calls.keys.job("a"), "unavailable", defaults.MAX_UNAVAILABLE - 1)
    outcome = await calls.fail("a", got.attempt, "w", "service_unavailable", "still down", 0.0)
    assert outcome == Outcome("FAILED")
    assert (await job_hash(calls, "a"))["status"] == "failed"


async def test_cancelled_class_cancels(calls: Calls) -> None:
    got = await running(calls)
    outcome = await calls.fail("a", got.attempt, "w", "cancelled", "interrupted by the user", 0.0)
    assert outcome == Outcome("CANCELLED")
    h = await job_hash(calls, "a")
    assert h["status"] == "cancelled" and h["failure_class"] == "cancelled" and "tries" not in h
    assert await calls.client.zscore(calls.keys.done("cancelled"), "a") is not None
    assert [e["type"] for e in await job_events(calls, "a")][-1] == "job_cancelled"


async def test_unknown_class_is_stored_as_unknown_and_retried(calls: Calls) -> None:
    got = await running(calls)
    outcome = await calls.fail("a", got.attempt, "w", "weird-class", "??", 0.0)
    assert outcome.code == "RETRY" and outcome.detail[1] == "scheduled"
    assert (await job_hash(calls, "a"))["failure_class"] == "unknown"


@pytest.mark.parametrize("fclass", [c.value for c in policy.FailureClass])
@pytest.mark.parametrize("tries_before", [0, 2])
async def test_lua_follows_the_python_policy(calls: Calls, fclass: str, tries_before: int) -> None:
    await register(calls, "other")  # another worker that can run it (resource_exhausted retries)
    got = await running(calls, max_attempts=3)
    if tries_before:
        await calls.client.hset(calls.keys.job("a"), "tries", tries_before)
    outcome = await calls.fail("a", got.attempt, "w", fclass, "x", 0.25)
    want = policy.decide(fclass, tries_before, 3, 0, 0.25)
    code = {"retry": "RETRY", "fail": "FAILED", "cancel": "CANCELLED"}[want.action]
    assert outcome.code == code, (fclass, want)
    if code == "RETRY":
        assert int(outcome.detail[0]) == want.delay_ms
    h = await job_hash(calls, "a")
    assert int(h.get("tries", 0)) == tries_before + (1 if want.counts else 0)
    assert ("avoid_workers" in h) is want.avoid_worker


async def test_long_error_text_is_truncated(calls: Calls) -> None:
    got = await running(calls)
    await calls.fail("a", got.attempt, "w", "malformed", "e" * 10_000, 0.0)
    h = await job_hash(calls, "a")
    assert len(h["error"]) == 2000
    assert len(json.loads(h["history"])[0]["error"]) == 500


async def test_stale_fail_is_refused_and_changes_nothing(calls: Calls) -> None:
    first, _ = await stale_setup(calls)
    before = await job_state(calls, "a")
    assert (await calls.fail("a", first.attempt, "w1", "malformed", "late", 0.0)).code == OutcomeCode.STALE
    assert await job_state(calls, "a") == before


async def test_fail_of_an_unknown_job(calls: Calls) -> None:
    assert (await calls.fail("nope", 1, "w", "transient", "x", 0.0)).code == OutcomeCode.NOT_FOUND


async def test_fail_with_next_claim(calls: Calls) -> None:
    got = await running(calls)
    await submit(calls, "b")
    outcome = await calls.fail("a", got.attempt, "w", "malformed", "bad", 0.0, NextClaim("r", LEASE_MS, True, 3))
    nxt = outcome.next_claim
    assert outcome.code == "FAILED"
    assert isinstance(nxt, ClaimedJob) and nxt.id == "b"
    assert (await calls.client.hgetall(calls.keys.worker("w")))["job"] == "b"


async def test_fail_with_next_claim_counts_the_failure_once(calls: Calls) -> None:
    # The count rides in the claim's write of the worker record, whether it finds a job or not.
    got = await running(calls, max_attempts=1)
    await submit(calls, "b")
    nxt = (await calls.fail("a", got.attempt, "w", "transient", "x", 0.0, NextClaim("r", LEASE_MS, True, 3))).next_claim
    assert isinstance(nxt, ClaimedJob) and nxt.id == "b"
    assert (await calls.client.hget(calls.keys.worker("w"), "failed")) == "1"
    again = await calls.fail("a", got.attempt, "w", "transient", "x", 0.0, NextClaim("r", LEASE_MS, True, 3))
    assert again.code == OutcomeCode.STALE and again.next_claim == nxt
    assert (await calls.client.hget(calls.keys.worker("w"), "failed")) == "1"
    last = (
        await calls.fail("b", nxt.attempt, "w", "malformed", "x", 0.0, NextClaim("r2", LEASE_MS, True, 3))
    ).next_claim
    assert isinstance(last, NoJob)
    w = await calls.client.hgetall(calls.keys.worker("w"))
    assert w["failed"] == "2" and w["status"] == "idle" and w["job"] == ""


# -- out of memory: avoid every worker it ran out of memory on, prefer more memory -------------------


def gpu(gb: int) -> dict[str, object]:
    return caps_with(hardware={"gpu_model": f"{gb} GB card", "gpu_memory_gb": gb})


async def oom(calls: Calls, worker: str, job_id: str = "a") -> Outcome:
    got = await claim_job(calls, worker)
    assert got.id == job_id
    return await calls.fail(job_id, got.attempt, worker, "resource_exhausted", "CUDA out of memory", 0.0)


async def test_out_of_memory_on_8_and_16_gb_lands_on_the_24_gb_worker(calls: Calls) -> None:
    for wid, gb in (("w8", 8), ("w16", 16), ("w24", 24)):
        await register(calls, wid, caps=gpu(gb))
    await submit(calls, "a")
    assert (await oom(calls, "w8")).code == "RETRY"
    assert json.loads((await job_hash(calls, "a"))["avoid_workers"]) == ["w8"]
    assert isinstance(await claim(calls, "w8"), NoJob), "the worker it ran out of memory on never takes it again"
    assert (await oom(calls, "w16")).code == "RETRY"
    h = await job_hash(calls, "a")
    assert json.loads(h["avoid_workers"]) == ["w8", "w16"] and h["gpu_gb_over"] == "16"
    for small in ("w8", "w16"):
        assert isinstance(await claim(calls, small), NoJob), f"{small} took the job back"
    again = await claim_job(calls, "w24")
    assert again.id == "a" and again.attempt == 3


async def test_out_of_memory_prefers_a_worker_with_more_memory(calls: Calls) -> None:
    """After running out of memory on 16 GB with a 24 GB worker live, an 8 GB (or another 16 GB)
    worker does not take it; the retry wakes the 24 GB worker."""
    for wid, gb in (("w16", 16), ("w8", 8), ("w16b", 16), ("w24", 24)):
        await register(calls, wid, caps=gpu(gb))
    await submit(calls, "a")
    got = await claim_job(calls, "w16")
    for wid in ("w8", "w16b", "w24"):
        assert isinstance(await claim(calls, wid), NoJob)  # idle now: the retry wakes one of them
    outcome = await calls.fail("a", got.attempt, "w16", "resource_exhausted", "CUDA out of memory", 0.0)
    assert outcome.code == "RETRY"
    for wid in ("w8", "w16b"):
        assert isinstance(await claim(calls, wid), NoJob), f"{wid} has no more memory than 16 GB"
    assert await calls.client.lrange(calls.keys.wake("tok-w24"), 0, -1) == ["w24"], "the 24 GB worker was woken"
    assert (await claim_job(calls, "w24")).id == "a"


async def test_out_of_memory_with_only_the_same_size_left_goes_there(calls: Calls) -> None:
    """No live worker has more memory: the floor stays off, another worker of the same size may try."""
    await register(calls, "a24", caps=gpu(24))
    await register(calls, "b24", caps=gpu(24))
    await submit(calls, "a")
    assert (await oom(calls, "a24")).code == "RETRY"
    assert "gpu_gb_over" not in await job_hash(calls, "a")
    assert (await claim_job(calls, "b24")).id == "a"


async def test_out_of_memory_on_two_workers_with_no_third_fails_at_once(calls: Calls) -> None:
    await register(calls, "w8", caps=gpu(8))
    await register(calls, "w16", caps=gpu(16))
    await register(calls, "cpu", services=("other",))  # live, but not for this service
    await submit(calls, {"id": "a", "max_attempts": 5})
    assert (await oom(calls, "w8")).code == "RETRY"
    outcome = await oom(calls, "w16")
    assert outcome.code == "FAILED", "no other live worker can run it: no pause, no further tries"
    h = await job_hash(calls, "a")
    assert h["status"] == "failed" and h["failure_class"] == "resource_exhausted" and h["tries"] == "2"
    assert h["error"] == "out of memory on w8, w16 and no other live worker can run it: CUDA out of memory"
    ev = json.loads((await events(calls, "job_failed", "a"))[-1]["data"])
    assert ev["no_other_worker"] is True and "no other live worker" in ev["error"]
    assert 0 < await calls.client.ttl(calls.keys.job_events("a"))


async def test_out_of_memory_counts_only_workers_that_may_run_the_job(calls: Calls) -> None:
    """A live worker of the service that the job's requirements or customer exclude is no rescue."""
    await register(calls, "w24", caps=gpu(24))
    await register(calls, "spot", caps=caps_with(pool="spot", hardware={"gpu_memory_gb": 80}))
    await register(calls, "denier", caps=caps_with(customer_access={"denied_customers": ["acme"]}))
    await submit(calls, {"id": "a", "requirements": {"pool": "standard"}, "customer_id": "acme"})
    assert (await oom(calls, "w24")).code == "FAILED"


async def test_lua_agrees_with_after_out_of_memory(calls: Calls) -> None:
    """The Python twin (emp.model.retry.after_out_of_memory) decides what the fail Function wrote."""
    fleet = {"w8": gpu(8), "w16": gpu(16), "w24": gpu(24), "w48": gpu(48)}
    for wid, caps in fleet.items():
        await register(calls, wid, caps=caps)
    await submit(calls, {"id": "a", "max_attempts": 10})
    view = JobView(SERVICE)
    live = [(wid, {**caps, "services": [SERVICE]}) for wid, caps in fleet.items()]
    for wid in ("w16", "w24", "w48"):
        want = policy.after_out_of_memory(view, wid, fleet[wid], live)
        outcome = await oom(calls, wid)
        h = await job_hash(calls, "a")
        if want.other_worker:
            assert outcome.code == "RETRY"
            assert tuple(json.loads(h["avoid_workers"])) == want.avoid_workers
            assert (float(h["gpu_gb_over"]) if "gpu_gb_over" in h else None) == want.gpu_gb_over
        else:
            assert outcome.code == "FAILED" and h["status"] == "failed"
        view = JobView(SERVICE, avoid_workers=want.avoid_workers, gpu_gb_over=want.gpu_gb_over)
    assert view.avoid_workers == ("w16", "w24", "w48") and h["status"] == "failed", "w8 never qualified again"
