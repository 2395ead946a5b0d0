"""emp_retire_signatures: a signature whose queue stayed empty for the grace period is retired, with
its idle set and match-cache entries, so live signatures follow what is pending."""

from __future__ import annotations

import pytest

from emp.coordinator.maintenance import run_maintenance_once
from emp.model.requirements import canonicalize
from emp.redis.calls import Calls, NoJob
from tests.redis.helpers import SERVICE, claim, claim_ids, claim_job, register, sig_of, submit

pytestmark = pytest.mark.anyio

REQ = {"hardware": {"gpu_memory_gb": 16}}


async def retire_all(calls: Calls, grace_ms: int = 0) -> int:
    """Retirement calls until a round of every service's walk is done; signatures retired."""
    total = 0
    for _ in range(100):
        n, done = await calls.retire_signatures(grace_ms)
        total += n
        if done:
            return total
    raise AssertionError("the retirement walk never finished a round")


async def keys_like(calls: Calls, pattern: str) -> list[str]:
    return [k async for k in calls.client.scan_iter(match=calls.keys.prefix + pattern, count=1000)]


async def test_an_emptied_signature_is_retired_after_the_grace(calls: Calls) -> None:
    await register(calls, "w")
    await submit(calls, {"id": "a", "requirements": REQ})
    assert await claim_ids(calls, "w") == ["a"]
    sig = sig_of(SERVICE, REQ)
    assert await retire_all(calls, grace_ms=60_000) == 0, "still within the grace"
    assert await calls.client.hget(calls.keys.sigs(SERVICE), sig) is not None
    assert await calls.client.zscore(calls.keys.empty_sigs(SERVICE), sig) is not None
    assert await retire_all(calls) == 1
    assert await calls.client.hlen(calls.keys.sigs(SERVICE)) == 0
    assert not await calls.client.exists(calls.keys.empty_sigs(SERVICE))
    assert await calls.client.hget(calls.keys.worker_matches("w"), sig) is None


async def test_a_signature_with_pending_jobs_is_never_retired(calls: Calls) -> None:
    await submit(calls, {"id": "a", "requirements": REQ})
    assert await retire_all(calls) == 0
    assert await calls.client.hget(calls.keys.sigs(SERVICE), sig_of(SERVICE, REQ)) is not None
    assert not await calls.client.exists(calls.keys.empty_sigs(SERVICE))


async def test_a_job_arriving_later_re_creates_its_signature(calls: Calls) -> None:
    await register(calls, "w")
    await submit(calls, {"id": "a", "requirements": REQ})
    await claim_ids(calls, "w")
    assert await retire_all(calls) == 1
    await submit(calls, {"id": "b", "requirements": REQ})
    assert await calls.client.hget(calls.keys.sigs(SERVICE), sig_of(SERVICE, REQ)) == canonicalize(REQ).text
    assert await claim_ids(calls, "w") == ["b"]


@pytest.mark.parametrize("req", [REQ, None])
async def test_a_job_that_was_away_while_its_signature_retired_brings_it_back(calls: Calls, req: object) -> None:
    await register(calls, "w")
    await register(calls, "other", wake_token="t-other")
    await submit(calls, {"id": "a", "requirements": req})
    got = await claim_job(calls, "w")
    assert isinstance(await claim(calls, "other"), NoJob)  # idle
    assert await retire_all(calls) == 1
    await calls.release("a", got.attempt, "w", "shutdown")
    sig = sig_of(SERVICE, req)
    assert await calls.client.hget(calls.keys.sigs(SERVICE), sig) == canonicalize(req).text
    assert await calls.client.lrange(calls.keys.wake("t-other"), 0, -1) == ["other"], "its idle set was filled again"
    assert (await claim_job(calls, "other")).id == "a"


async def test_an_unworkable_signature_with_no_jobs_left_is_retired(calls: Calls) -> None:
    await submit(calls, {"id": "a", "requirements": REQ})
    sig = sig_of(SERVICE, REQ)
    await calls.mark_unworkable(SERVICE, sig, 0)
    assert await retire_all(calls) == 0, "its job waits in the unworkable queue"
    await calls.cancel("a")
    assert await retire_all(calls) == 1
    assert not await calls.client.exists(calls.keys.usigs(SERVICE))


async def test_counts_stay_bounded_after_1000_signatures_came_and_went(calls: Calls) -> None:
    await register(calls, "w")
    for wid in ("idle1", "idle2"):
        await register(calls, wid)
        assert isinstance(await claim(calls, wid), NoJob)
    reqs = [{"hardware": {"gpu_memory_gb": 1 + i / 1000}} for i in range(1000)]
    await submit(calls, *[{"id": f"j{i}", "requirements": r} for i, r in enumerate(reqs)])
    assert await calls.client.hlen(calls.keys.sigs(SERVICE)) == 1000
    assert len(await claim_ids(calls, "w", limit=1001)) == 1000
    for wid in ("idle1", "idle2"):
        assert isinstance(await claim(calls, wid), NoJob)  # idle again: in every signature's set
    assert len(await keys_like(calls, f"idle:{SERVICE}:*")) == 1000
    assert await retire_all(calls) == 1000
    assert await calls.client.hlen(calls.keys.sigs(SERVICE)) == 0
    assert await calls.client.zcard(calls.keys.heads(SERVICE)) == 0
    assert not await calls.client.exists(calls.keys.empty_sigs(SERVICE))
    assert await keys_like(calls, f"idle:{SERVICE}:*") == []
    for wid in ("w", "idle1", "idle2"):
        assert await calls.client.hlen(calls.keys.worker_matches(wid)) == 0
    # A worker's next idle poll leaves the sets that are gone.
    assert isinstance(await claim(calls, "idle1"), NoJob)
    assert await calls.client.hget(calls.keys.worker("idle1"), "isets") == f'["{calls.keys.idle(SERVICE)}"]'


async def test_the_maintenance_pass_retires_signatures(calls: Calls) -> None:
    await register(calls, "w")
    await submit(calls, {"id": "a", "requirements": REQ}, "b")
    await claim_ids(calls, "w")
    report = await run_maintenance_once(calls, retire_grace_s=0)
    assert report.retired == 2 and "signatures_retired 2" in report.summary()
    assert await calls.client.hlen(calls.keys.sigs(SERVICE)) == 0


async def test_a_job_still_shows_its_requirements_after_its_signature_retired(calls: Calls) -> None:
    await register(calls, "w")
    await submit(calls, {"id": "a", "requirements": REQ}, {"id": "b"})
    assert sorted(await claim_ids(calls, "w")) == ["a", "b"]
    assert await retire_all(calls) == 2
    shown = await calls.get_job("a")
    assert shown is not None and shown.requirements == {"positive_requirements": {"hardware.gpu_memory_gb": 16}}
    plain = await calls.get_job("b")
    assert plain is not None and plain.requirements == {}
    assert "req" not in shown.extra, "the job's own copy is not an unknown field"
