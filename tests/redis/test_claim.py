"""emp_claim: the best job this worker can run; order, idempotency, matching, idle and wake-ups."""

from __future__ import annotations

import json

import pytest

from emp.errors import JobValidationError
from emp.redis.calls import Calls, ClaimedJob, NoJob, NotRegistered
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
    register,
    server_clock_past,
    server_ms,
    sig_of,
    submit,
)

pytestmark = pytest.mark.anyio

NEEDS_48 = {"hardware": {"gpu_memory_gb": 48}}


# -- basics -----------------------------------------------------------------------------------


async def test_empty_queue_gives_no_job(calls: Calls) -> None:
    await register(calls, "w")
    assert await claim(calls, "w") == NoJob(None, None)


async def test_unknown_worker_is_told_to_register(calls: Calls) -> None:
    await submit(calls, "a")
    assert isinstance(await claim(calls, "ghost"), NotRegistered)
    assert await job_hash(calls, "a") != {} and (await job_hash(calls, "a"))["status"] == "pending"


async def test_claim_returns_the_job_and_writes_lease_worker_and_event(calls: Calls) -> None:
    await register(calls, "w", machine_id="m7")
    await submit(
        calls,
        {"id": "a", "payload": {"prompt": "hi"}, "customer_id": "acme", "workflow_id": "wf", "step": 2},
        total_steps=4,
        timeout_s=30,
        max_attempts=5,
    )
    t0 = await server_ms(calls)
    got = await claim_job(calls, "w", lease_ms=10_000)
    t1 = await server_ms(calls)
    assert got == ClaimedJob(
        id="a",
        attempt=1,
        service=SERVICE,
        payload={"prompt": "hi"},
        timeout_s=30.0,
        customer_id="acme",
        workflow_id="wf",
        step=2,
        total_steps=4,
        max_attempts=5,
        status="in_progress",
    )
    h = await job_hash(calls, "a")
    assert h["status"] == "in_progress" and h["attempt"] == "1" and h["worker_id"] == "w" and h["machine_id"] == "m7"
    assert t0 <= int(h["assigned_at"]) == int(h["started_at"]) <= t1
    deadline = await calls.client.zscore(calls.keys.leases, "a")
    assert deadline == int(h["assigned_at"]) + 10_000
    w = await calls.client.hgetall(calls.keys.worker("w"))
    assert w["status"] == "busy" and w["job"] == "a"
    # Out of the queue, the heads and the secondary indexes.
    assert await calls.client.zcard(calls.keys.queue(SERVICE, sig_of(SERVICE))) == 0
    assert await calls.client.zcard(calls.keys.heads(SERVICE)) == 0
    assert await calls.client.zcard(calls.keys.prefix + f"qwf:{SERVICE}:wf") == 0
    assert await calls.client.zcard(calls.keys.prefix + f"qc:{SERVICE}:acme") == 0
    started = await events(calls, "job_started")
    assert [(e["job"], e["worker"], e["attempt"]) for e in started] == [("a", "w", "1")]
    assert await events(calls, "job_assigned") == []
    assert [e["type"] for e in await job_events(calls, "a")] == ["job_started"]


async def test_claim_without_start_is_assigned(calls: Calls) -> None:
    await register(calls, "w")
    await submit(calls, "a")
    got = await claim_job(calls, "w", start=False)
    assert got.status == "assigned"
    h = await job_hash(calls, "a")
    assert h["status"] == "assigned" and "started_at" not in h
    assert [e["type"] for e in await job_events(calls, "a")] == ["job_assigned"]


async def test_lease_ms_must_be_positive(calls: Calls) -> None:
    await register(calls, "w")
    await submit(calls, "a")
    with pytest.raises(JobValidationError):
        await calls.claim("w", "r", 0)
    assert (await job_hash(calls, "a"))["status"] == "pending"


async def test_service_mismatch_gives_no_job(calls: Calls) -> None:
    await register(calls, "w", services=("ollama",))
    await submit(calls, "a")
    assert isinstance(await claim(calls, "w"), NoJob)
    assert (await job_hash(calls, "a"))["status"] == "pending"


async def test_worker_with_two_services_takes_the_best_across_both(calls: Calls) -> None:
    await register(calls, "w", services=(SERVICE, "a1111"))
    await submit(calls, {"id": "c1", "priority": 10}, {"id": "a1", "service": "a1111", "priority": 90})
    await submit(calls, {"id": "c2", "priority": 50})
    assert await claim_ids(calls, "w") == ["a1", "c2", "c1"]


# -- idempotency ------------------------------------------------------------------------------


async def test_same_request_id_returns_the_same_job_and_attempt(calls: Calls) -> None:
    await register(calls, "w")
    await submit(calls, "a", "b")
    first = await claim_job(calls, "w", request_id="req-1")
    again = await claim_job(calls, "w", request_id="req-1")
    assert again == first
    assert (await job_hash(calls, first.id))["attempt"] == "1"
    assert len(await events(calls, "job_started")) == 1
    other = await claim_job(calls, "w", request_id="req-2")
    assert other.id != first.id and other.attempt == 1


async def test_same_request_id_after_the_job_ended_claims_afresh(calls: Calls) -> None:
    await register(calls, "w")
    await submit(calls, "a", "b")
    first = await claim_job(calls, "w", request_id="r")
    await calls.complete(first.id, first.attempt, "w")
    again = await claim_job(calls, "w", request_id="r")
    assert again.id == "b"


# -- order ------------------------------------------------------------------------------------


async def test_priority_strictly_dominates_age(calls: Calls) -> None:
    await register(calls, "w")
    await submit(calls, {"id": "old-low", "priority": 10})
    await submit(calls, {"id": "mid", "priority": 50})
    await submit(calls, {"id": "new-high", "priority": 1000}, {"id": "zero", "priority": 0})
    await submit(calls, {"id": "new-mid", "priority": 50})
    assert await claim_ids(calls, "w") == ["new-high", "mid", "new-mid", "old-low", "zero"]


async def test_fifo_within_a_priority_in_submission_order_same_ms(calls: Calls) -> None:
    await register(calls, "w")
    ids = [f"j{i:03d}" for i in range(50)]
    # Ids in reverse lexical order too, so only the submission order can explain the result.
    ids = ids[::-1]
    await submit(calls, *ids)
    created = {(await job_hash(calls, i))["created_at"] for i in ids}
    assert len(created) == 1, "one batch: one millisecond"
    assert await claim_ids(calls, "w") == ids


async def test_fifo_across_signatures(calls: Calls) -> None:
    await register(calls, "w")
    jobs = [{"id": f"z{9 - i}", "requirements": {"pool": "standard"} if i % 2 else None} for i in range(10)]
    await submit(calls, *jobs)
    assert await calls.client.zcard(calls.keys.heads(SERVICE)) == 2
    assert await claim_ids(calls, "w") == [j["id"] for j in jobs]


async def test_workflow_priority_and_datetime_put_an_older_workflows_later_steps_first(calls: Calls) -> None:
    await register(calls, "w")
    t = await server_ms(calls)
    await submit(calls, {"id": "A1", "workflow_id": "A", "workflow_datetime": t - 10_000, "workflow_priority": 60})
    await submit(calls, {"id": "B1", "workflow_id": "B", "workflow_datetime": t - 5_000, "workflow_priority": 60})
    await submit(calls, {"id": "plain", "priority": 60})
    # Step 2 of the older workflow, submitted last, with a lower job priority: it still goes first
    # among equals, since the workflow's priority and time decide.
    await submit(
        calls, {"id": "A2", "workflow_id": "A", "workflow_datetime": t - 10_000, "workflow_priority": 60, "priority": 1}
    )
    await submit(calls, {"id": "urgent", "priority": 61})
    assert await claim_ids(calls, "w") == ["urgent", "A1", "A2", "B1", "plain"]


# -- no starvation ----------------------------------------------------------------------------


async def test_jobs_it_cannot_run_ahead_do_not_starve_a_worker(calls: Calls) -> None:
    await register(calls, "w24")  # 24 GB
    # 300 higher-priority jobs in 30 signatures that need more memory than it has...
    batch = [
        {"id": f"big{i}", "priority": 900, "requirements": {"hardware": {"gpu_memory_gb": 48 + i % 30}}}
        for i in range(300)
    ]
    await submit(calls, *batch)
    # ...ahead of one it can run.
    await submit(calls, {"id": "mine", "priority": 1})
    got = await claim_job(calls, "w24")
    assert got.id == "mine"
    assert isinstance(await claim(calls, "w24"), NoJob)


async def test_the_only_matching_signature_among_100_is_found(calls: Calls) -> None:
    await register(calls, "w", caps=caps_with(pool="p-73"))
    await submit(calls, *[{"id": f"j{i}", "priority": 100 + i, "requirements": {"pool": f"p-{i}"}} for i in range(100)])
    assert await calls.client.zcard(calls.keys.heads(SERVICE)) == 100
    got = await claim_job(calls, "w")
    assert got.id == "j73"
    # The match cache now knows every signature it looked at.
    cache = await calls.client.hgetall(calls.keys.prefix + "wm:w")
    assert cache[sig_of(SERVICE, {"pool": "p-73"})] == "1"
    assert cache[sig_of(SERVICE, {"pool": "p-99"})] == "0"


# -- per-job rules ----------------------------------------------------------------------------


async def test_workflow_restricted_worker_only_gets_its_workflow(calls: Calls) -> None:
    await register(calls, "wf-worker", caps=caps_with(workflow_id="wf-1"))
    await register(calls, "free")
    await submit(calls, {"id": "other", "priority": 99, "workflow_id": "wf-2"}, {"id": "none", "priority": 99})
    await submit(calls, {"id": "mine1", "workflow_id": "wf-1"}, {"id": "mine2", "workflow_id": "wf-1"})
    assert await claim_ids(calls, "wf-worker") == ["mine1", "mine2"]
    assert await claim_ids(calls, "free") == ["other", "none"]


async def test_allowed_customers_worker_only_gets_those_customers(calls: Calls) -> None:
    access = {"isolation": "loose", "allowed_customers": ["acme", "globex"], "denied_customers": []}
    await register(calls, "w", caps=caps_with(customer_access=access))
    await submit(
        calls,
        {"id": "initech", "customer_id": "initech", "priority": 99},
        {"id": "anon", "priority": 99},
        {"id": "g", "customer_id": "globex", "priority": 40},
        {"id": "a", "customer_id": "acme", "priority": 60},
    )
    assert await claim_ids(calls, "w") == ["a", "g"]


async def test_a_worker_registered_again_claims_with_its_new_services_and_customer_rules(calls: Calls) -> None:
    # The claim keeps decoded service lists and capabilities in the library's Lua state, by their
    # text: a registration with other text must be judged on its own, never on what an earlier one had.
    access = {"isolation": "loose", "allowed_customers": [], "denied_customers": ["evil"]}
    await register(calls, "w", caps=caps_with(customer_access=access))
    await submit(calls, {"id": "e1", "customer_id": "evil"}, {"id": "x1", "service": "ollama"})
    assert await claim_ids(calls, "w") == []
    other = {"isolation": "loose", "allowed_customers": [], "denied_customers": ["nobody"]}
    await register(calls, "w", services=(SERVICE, "ollama"), caps=caps_with(customer_access=other))
    assert sorted(await claim_ids(calls, "w")) == ["e1", "x1"]
    # Another worker with the first text still gets the first rules.
    await register(calls, "w2", caps=caps_with(customer_access=access))
    await submit(calls, {"id": "e2", "customer_id": "evil"}, {"id": "ok", "customer_id": "good"})
    assert await claim_ids(calls, "w2") == ["ok"]


async def test_denied_customer_is_skipped(calls: Calls) -> None:
    access = {"isolation": "loose", "allowed_customers": [], "denied_customers": ["evil"]}
    await register(calls, "w", caps=caps_with(customer_access=access))
    await submit(calls, *[{"id": f"evil{i}", "customer_id": "evil", "priority": 99} for i in range(5)])
    await submit(calls, {"id": "ok", "customer_id": "good"}, {"id": "anon"})
    assert await claim_ids(calls, "w") == ["ok", "anon"]
    for i in range(5):
        assert (await job_hash(calls, f"evil{i}"))["status"] == "pending"


async def test_strict_isolation(calls: Calls) -> None:
    strict = {"isolation": "strict", "allowed_customers": ["acme"], "denied_customers": []}
    await register(calls, "strict", caps=caps_with(customer_access=strict))
    await register(calls, "loose")
    await submit(
        calls,
        {"id": "needs-strict", "customer_id": "acme", "requirements": {"customer_isolation": "strict"}},
        {"id": "globex", "customer_id": "globex"},
        {"id": "acme-plain", "customer_id": "acme"},
    )
    # A loose worker never gets a job that needs strict isolation.
    assert await claim_ids(calls, "loose") == ["globex", "acme-plain"]
    assert await claim_ids(calls, "strict") == ["needs-strict"]


async def test_strict_worker_takes_only_its_allowed_customers(calls: Calls) -> None:
    strict = {"isolation": "strict", "allowed_customers": ["acme"], "denied_customers": []}
    await register(calls, "strict", caps=caps_with(customer_access=strict))
    await submit(calls, {"id": "globex", "customer_id": "globex"}, "anon", {"id": "acme", "customer_id": "acme"})
    assert await claim_ids(calls, "strict") == ["acme"]


async def test_avoid_worker_after_resource_exhausted(calls: Calls) -> None:
    await register(calls, "w1")
    await register(calls, "w2")
    await submit(calls, "oom")
    got = await claim_job(calls, "w1")
    out = await calls.fail("oom", got.attempt, "w1", "resource_exhausted", "CUDA out of memory", 0.0)
    assert out.code == "RETRY"
    member = (await calls.client.zrange(calls.keys.queue(SERVICE, sig_of(SERVICE)), 0, -1))[0]
    assert member[12] == "!", "an avoiding job is flagged in its member"
    assert isinstance(await claim(calls, "w1"), NoJob)
    again = await claim_job(calls, "w2")
    assert again.id == "oom" and again.attempt == 2


async def test_avoided_job_does_not_block_the_jobs_behind_it(calls: Calls) -> None:
    """Regression (_claim.lua scan_heads): a worker without customer rules read only the head member of
    each matching queue; when that head avoided this worker (resource_exhausted), the whole
    signature was skipped although jobs it may run waited right behind.
    docs/internals.md: "If the head job fails a per-job rule it looks at most 16 deep"."""
    await register(calls, "w1")
    await register(calls, "w2")  # so the out-of-memory job is retried (on w2), not failed at once
    await submit(calls, {"id": "oom", "priority": 99}, "next")
    got = await claim_job(calls, "w1")
    await calls.fail("oom", got.attempt, "w1", "resource_exhausted", "oom", 0.0)
    nxt = await claim(calls, "w1")
    assert isinstance(nxt, ClaimedJob) and nxt.id == "next", (
        f"the avoided head job blocks its whole queue for the worker it avoids: got {nxt!r}"
    )


# -- idle and wake-ups ------------------------------------------------------------------------


async def test_empty_claim_puts_the_worker_in_the_idle_sets(calls: Calls) -> None:
    await register(calls, "w", services=(SERVICE, "a1111"))
    t0 = await server_ms(calls)
    assert isinstance(await claim(calls, "w"), NoJob)
    for svc in (SERVICE, "a1111"):
        deadline = await calls.client.zscore(calls.keys.idle(svc), "w")
        assert deadline is not None and deadline >= t0 + 1000
    assert (await calls.client.hgetall(calls.keys.worker("w")))["status"] == "idle"


async def test_submitting_a_job_it_can_run_wakes_it(calls: Calls) -> None:
    await register(calls, "w", wake_token="tok")
    await claim(calls, "w")
    await submit(calls, "a")
    assert await calls.client.lrange(calls.keys.wake("tok"), 0, -1) == ["w"]
    assert await calls.client.zscore(calls.keys.idle(SERVICE), "w") is None
    assert 0 < await calls.client.pttl(calls.keys.wake("tok")) <= 60_000


async def test_a_job_it_cannot_run_does_not_wake_it(calls: Calls) -> None:
    await register(calls, "w", wake_token="tok")
    await claim(calls, "w")
    await submit(calls, {"id": "big", "requirements": NEEDS_48})
    await submit(calls, {"id": "other-svc", "service": "ollama"})
    assert await calls.client.llen(calls.keys.wake("tok")) == 0
    assert await calls.client.zscore(calls.keys.idle(SERVICE), "w") is not None


async def test_one_submission_wakes_only_the_worker_that_can_run_it(calls: Calls) -> None:
    await register(calls, "small", wake_token="t-small")
    await register(calls, "big", caps=caps_with(hardware={"gpu_memory_gb": 80}), wake_token="t-big")
    await register(calls, "big2", caps=caps_with(hardware={"gpu_memory_gb": 80}), wake_token="t-big2")
    for w in ("small", "big", "big2"):
        await claim(calls, w)
    await submit(calls, {"id": "j", "requirements": NEEDS_48})
    woken = {w: await calls.client.llen(calls.keys.wake(f"t-{w}")) for w in ("small", "big", "big2")}
    assert woken["small"] == 0 and woken["big"] + woken["big2"] == 1


async def test_a_claim_that_gets_a_job_leaves_the_idle_sets(calls: Calls) -> None:
    await register(calls, "w1", wake_token="t1")
    await register(calls, "w2", wake_token="t2")
    await claim(calls, "w1")
    await claim(calls, "w2")
    await submit(calls, "j")  # wakes one of them; the other claims first
    woken = "w1" if await calls.client.llen(calls.keys.wake("t1")) else "w2"
    other = "w2" if woken == "w1" else "w1"
    assert await calls.client.zscore(calls.keys.idle(SERVICE), other) is not None
    assert (await claim_job(calls, other)).id == "j"
    assert await calls.client.zrange(calls.keys.idle(SERVICE), 0, -1) == []
    assert await calls.client.hget(calls.keys.worker(other), "idle") == "0"


async def test_no_job_reports_the_next_scheduled_time(calls: Calls) -> None:
    await register(calls, "w")
    run_at = await server_ms(calls) + 60_000
    await submit(calls, {"id": "later", "run_at": run_at})
    got = await claim(calls, "w")
    assert got == NoJob(run_at, run_at)


async def test_claim_requeues_an_expired_lease_and_can_take_it(calls: Calls) -> None:
    """Recovery needs no coordinator: any claim requeues expired leases first."""
    await register(calls, "dead")
    await register(calls, "alive")
    await submit(calls, "a")
    await claim_job(calls, "dead", lease_ms=1)
    # Wait for the server clock to pass the deadline.
    deadline = await calls.client.zscore(calls.keys.leases, "a")
    assert deadline is not None
    await server_clock_past(calls, deadline)
    got = await claim_job(calls, "alive", lease_ms=LEASE_MS)
    assert got.id == "a" and got.attempt == 2
    h = await job_hash(calls, "a")
    assert h["lost"] == "1" and json.loads(h["history"])[0]["outcome"] == "lease_expired"


# -- mixed fleets: waking the one worker that can run a job ----------------------------------

SMALL_GPU = caps_with(hardware={"gpu_model": "8 GB card", "gpu_memory_gb": 8})
BIG_GPU = caps_with(hardware={"gpu_model": "48 GB card", "gpu_memory_gb": 48})
NEEDS_40 = {"hardware": {"gpu_memory_gb": 40}}


async def mixed_fleet(calls: Calls, big: tuple[str, ...] = ("big",)) -> list[str]:
    """11 idle 8 GB workers registered first, then the idle 48 GB ones; returns every worker id."""
    ids = [f"small{i}" for i in range(11)]
    for wid in ids:
        await register(calls, wid, caps=SMALL_GPU, wake_token=f"t-{wid}")
        assert isinstance(await claim(calls, wid), NoJob)
    for wid in big:
        await register(calls, wid, caps=BIG_GPU, wake_token=f"t-{wid}")
        assert isinstance(await claim(calls, wid), NoJob)
    return ids + list(big)


async def woken(calls: Calls, workers: list[str]) -> list[str]:
    """The workers whose wake list holds a token; the lists are emptied for the next step."""
    out = [w for w in workers if await calls.client.llen(calls.keys.wake(f"t-{w}"))]
    for w in workers:
        await calls.client.delete(calls.keys.wake(f"t-{w}"))
    return out


async def test_a_submit_wakes_the_matching_worker_behind_11_that_cannot(calls: Calls) -> None:
    fleet = await mixed_fleet(calls)
    await submit(calls, {"id": "j", "requirements": NEEDS_40})
    assert await woken(calls, fleet) == ["big"]
    # The woken worker left every idle set it was in; the others stay idle.
    assert await calls.client.hget(calls.keys.worker("big"), "isets") == ""
    assert await calls.client.zscore(calls.keys.idle(SERVICE), "big") is None
    assert await calls.client.zcard(calls.keys.idle(SERVICE)) == 11
    assert (await claim_job(calls, "big")).id == "j"


async def test_release_retry_and_a_lapsed_lease_wake_the_matching_worker(calls: Calls) -> None:
    fleet = await mixed_fleet(calls, big=("big1", "big2"))
    await submit(calls, {"id": "j", "requirements": NEEDS_40})
    first = (await woken(calls, fleet))[0]
    other = "big2" if first == "big1" else "big1"
    got = await claim_job(calls, first)
    # release: back to the queue, the other 48 GB worker is woken.
    await calls.release("j", got.attempt, first, "test")
    assert await woken(calls, fleet) == [other]
    got = await claim_job(calls, other)
    assert isinstance(await claim(calls, first), NoJob)  # idle again
    # a manual retry of a failed job.
    assert (await calls.fail("j", got.attempt, other, "malformed", "bad", 0.0)).code == "FAILED"
    assert await calls.retry("j") == "pending"
    assert await woken(calls, fleet) == [first]
    # a lease that lapsed (the worker died): the requeue wakes the other one.
    got = await claim_job(calls, first)
    assert isinstance(await claim(calls, other), NoJob)  # idle
    await calls.heartbeat(first, 1, 30_000, [("j", got.attempt)])  # the lease now lapses in 1 ms
    deadline = await calls.client.zscore(calls.keys.leases, "j")
    assert deadline is not None
    await server_clock_past(calls, deadline)
    assert (await calls.maintain(100, 3))[1] == 1
    assert await woken(calls, fleet) == [other]


async def test_a_revived_signature_wakes_its_matching_idle_worker(calls: Calls) -> None:
    fleet = await mixed_fleet(calls)
    await submit(calls, {"id": "j", "requirements": NEEDS_40})
    await woken(calls, fleet)
    sig = sig_of(SERVICE, NEEDS_40)
    assert (await calls.mark_unworkable(SERVICE, sig, 0))[0] == "OK"
    assert isinstance(await claim(calls, "big"), NoJob)  # idle; the signature is flagged, so not in its set
    assert await calls.client.zscore(calls.keys.idle_sig(SERVICE, sig), "big") is None
    assert (await calls.revive_unworkable(SERVICE, sig))[0] == "OK"
    assert await woken(calls, fleet) == ["big"]


async def test_a_restricted_worker_is_woken_for_its_workflow_and_customer(calls: Calls) -> None:
    await register(calls, "plain", caps=SMALL_GPU, wake_token="t-plain")
    await register(calls, "wf", caps=caps_with(workflow_id="wf-1"), wake_token="t-wf")
    acme = {"isolation": "loose", "allowed_customers": ["acme"], "denied_customers": []}
    await register(calls, "acme", caps=caps_with(customer_access=acme), wake_token="t-acme")
    for w in ("plain", "wf", "acme"):
        assert isinstance(await claim(calls, w), NoJob)
    fleet = ["plain", "wf", "acme"]
    await submit(calls, {"id": "j1", "requirements": NEEDS_48, "workflow_id": "wf-2"})
    assert await woken(calls, fleet) == [], "nobody idle may run it"
    await submit(calls, {"id": "j2", "workflow_id": "wf-1", "requirements": {"hardware": {"gpu_memory_gb": 16}}})
    assert await woken(calls, fleet) == ["wf"]
    await submit(calls, {"id": "j3", "customer_id": "acme", "requirements": {"hardware": {"gpu_memory_gb": 16}}})
    assert await woken(calls, fleet) == ["acme"]


async def test_a_candidate_the_job_avoids_is_passed_over_for_the_next(calls: Calls) -> None:
    """Per-job rules are checked at wake time: a denied customer's job wakes another matching worker."""
    deny = {"isolation": "loose", "allowed_customers": [], "denied_customers": ["evil"]}
    await register(calls, "picky", caps=caps_with(customer_access=deny), wake_token="t-picky")
    assert isinstance(await claim(calls, "picky"), NoJob)
    await register(calls, "any", wake_token="t-any")
    assert isinstance(await claim(calls, "any"), NoJob)
    await submit(calls, {"id": "j", "customer_id": "evil"})
    assert await woken(calls, ["picky", "any"]) == ["any"]


# -- no starvation, whatever the number of signatures or the depth -----------------------------


@pytest.mark.parametrize("n", [300, 1000])
async def test_a_low_priority_job_is_found_behind_signatures_only_other_workers_run(calls: Calls, n: int) -> None:
    await register(calls, "w")  # pool "standard"
    await register(calls, "busy", caps=caps_with(pool="other"))
    await submit(calls, *[{"id": f"x{i}", "priority": 900, "requirements": {"pool": f"p-{i}"}} for i in range(n)])
    await submit(calls, {"id": "mine", "priority": 1, "requirements": {"pool": "standard"}})
    assert await calls.client.zcard(calls.keys.heads(SERVICE)) == n + 1
    got = await claim_job(calls, "w")
    assert got.id == "mine"
    assert isinstance(await claim(calls, "w"), NoJob)


async def test_a_workflow_restricted_worker_finds_its_job_behind_thousands(calls: Calls) -> None:
    await register(calls, "wf", caps=caps_with(workflow_id="wf-1"))
    for b in range(3):
        await submit(calls, *[{"id": f"o{b}-{i}", "priority": 900, "workflow_id": f"wf-x{i}"} for i in range(1000)])
    # Its own workflow's jobs that need more memory than it has, deeper than one page...
    await submit(
        calls, *[{"id": f"big{i}", "priority": 800, "workflow_id": "wf-1", "requirements": NEEDS_48} for i in range(40)]
    )
    await submit(calls, {"id": "mine", "priority": 1, "workflow_id": "wf-1"})
    assert (await claim_job(calls, "wf")).id == "mine"


async def test_a_customer_restricted_worker_finds_its_job_behind_thousands(calls: Calls) -> None:
    acme = {"isolation": "strict", "allowed_customers": ["acme"], "denied_customers": []}
    await register(calls, "acme", caps=caps_with(customer_access=acme))
    for b in range(3):
        await submit(calls, *[{"id": f"o{b}-{i}", "priority": 900, "customer_id": f"c{i}"} for i in range(1000)])
    await submit(
        calls, *[{"id": f"big{i}", "priority": 800, "customer_id": "acme", "requirements": NEEDS_48} for i in range(40)]
    )
    await submit(calls, {"id": "mine", "priority": 1, "customer_id": "acme"})
    assert (await claim_job(calls, "acme")).id == "mine"


async def test_many_jobs_a_worker_may_not_take_do_not_hide_the_one_behind_them(calls: Calls) -> None:
    deny = {"isolation": "loose", "allowed_customers": [], "denied_customers": ["evil"]}
    await register(calls, "w", caps=caps_with(customer_access=deny))
    await submit(calls, *[{"id": f"evil{i}", "customer_id": "evil", "priority": 99} for i in range(300)])
    await submit(calls, {"id": "ok", "customer_id": "good", "priority": 1})
    assert (await claim_job(calls, "w")).id == "ok"
