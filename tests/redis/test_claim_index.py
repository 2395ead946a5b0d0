"""The claim index (docs/internals.md "Claim index"): per capability class, mheads:<svc>:<class> holds
exactly the heads of the signatures that class matches, through submits, claims, retirement,
unworkable / revive and workers leaving; a claim through it still gets the best job it may run."""

from __future__ import annotations

import json
from typing import Any

import pytest

from emp import defaults
from emp.model.matching import requirements_match
from emp.model.requirements import canonical_from_text
from emp.redis.calls import Calls, ClaimedJob, NoJob
from tests.redis.helpers import SERVICE, caps_with, claim, claim_job, register, sig_of, submit

pytestmark = pytest.mark.anyio

NEEDS_48 = {"hardware": {"gpu_memory_gb": 48}}


async def recomputed_index(calls: Calls, service: str = SERVICE) -> dict[str, dict[str, float]]:
    """class -> the heads its index should hold, recomputed from heads:<svc> with the Python matcher."""
    r, k = calls.client, calls.keys
    heads = dict(await r.zrange(k.heads(service), 0, -1, withscores=True))
    texts = {**await r.hgetall(k.usigs(service)), **await r.hgetall(k.sigs(service))}
    out: dict[str, dict[str, float]] = {}
    for cls, caps_text in (await r.hgetall(k.classes(service))).items():
        caps = json.loads(caps_text)
        out[cls] = {
            hm: score
            for hm, score in heads.items()
            if requirements_match(canonical_from_text(texts[hm[12:]].lstrip("~")), caps, service)
        }
    return out


async def assert_index_consistent(calls: Calls, service: str = SERVICE) -> dict[str, dict[str, float]]:
    r, k = calls.client, calls.keys
    want = await recomputed_index(calls, service)
    for cls, heads in want.items():
        got = dict(await r.zrange(k.class_heads(service, cls), 0, -1, withscores=True))
        assert got == heads, cls
    # Each judged signature names exactly the indexed classes that match it.
    classes = await r.hgetall(k.classes(service))
    texts = {**await r.hgetall(k.usigs(service)), **await r.hgetall(k.sigs(service))}
    for sig, names in (await r.hgetall(k.sig_classes(service))).items():
        assert sig in texts, f"class list of a retired signature {sig}"
        req = canonical_from_text(texts[sig].lstrip("~"))
        matching = {c for c, caps in classes.items() if requirements_match(req, json.loads(caps), service)}
        assert set(names.split()) == matching, sig
    return want


async def worker_class(calls: Calls, wid: str) -> str:
    cls = await calls.client.hget(calls.keys.worker(wid), "cls")
    assert cls is not None
    return str(cls)


def mixed_jobs(prefix: str) -> list[dict[str, Any]]:
    return [
        {"id": f"{prefix}-std", "priority": 10, "requirements": {"pool": "standard"}},
        {"id": f"{prefix}-other", "priority": 20, "requirements": {"pool": "other"}},
        {"id": f"{prefix}-big", "priority": 30, "requirements": NEEDS_48},
        {"id": f"{prefix}-any", "priority": 5},
        {"id": f"{prefix}-std2", "priority": 1, "requirements": {"pool": "standard"}},
    ]


async def test_index_follows_submits_claims_retirement_unworkable_and_workers_leaving(calls: Calls) -> None:
    r, k = calls.client, calls.keys
    await register(calls, "a1")  # pool "standard"
    await register(calls, "a2")  # the same capabilities: the same class
    await register(calls, "b", caps=caps_with(pool="other"))
    await register(calls, "wf", caps=caps_with(workflow_id="wf-1"))  # uses its own index
    assert await worker_class(calls, "a1") == await worker_class(calls, "a2") != await worker_class(calls, "b")
    assert await r.hget(k.worker("wf"), "cls") == ""

    await submit(calls, *mixed_jobs("s1"))
    assert (await claim_job(calls, "a1")).id == "s1-std"
    assert (await claim_job(calls, "b")).id == "s1-other"
    built = await assert_index_consistent(calls)
    assert set(built) == {await worker_class(calls, "a1"), await worker_class(calls, "b")}

    # New signatures after the indexes exist, and heads that move.
    await submit(
        calls, *mixed_jobs("s2"), {"id": "new-sig", "priority": 0, "requirements": {"pool": "standard", "x": 1}}
    )
    await assert_index_consistent(calls)
    claimed = []
    for _ in range(6):
        got = await claim(calls, "a2")
        if not isinstance(got, ClaimedJob):
            break
        claimed.append(got.id)
        await assert_index_consistent(calls)
    assert "s2-std2" in claimed and "s2-other" not in claimed and "s2-big" not in claimed

    # Unworkable and back.
    big = sig_of(SERVICE, NEEDS_48)
    assert (await calls.mark_unworkable(SERVICE, big, 0))[0] == "OK"
    await assert_index_consistent(calls)
    assert (await calls.revive_unworkable(SERVICE, big))[0] == "OK"
    await assert_index_consistent(calls)

    # Retirement of the signatures whose queues are empty now.
    for _ in range(4):
        if isinstance(await claim(calls, "b"), NoJob):
            break
    retired, _done = await calls.retire_signatures(0)
    assert retired > 0
    await assert_index_consistent(calls)

    # The last worker of class b leaves: the maintenance pass drops its index.
    cls_b = await worker_class(calls, "b")
    assert await calls.worker_offline("b", "test")
    await calls.cleanup(100)
    assert cls_b not in await r.hgetall(k.classes(SERVICE))
    assert await r.exists(k.class_heads(SERVICE, cls_b)) == 0
    await assert_index_consistent(calls)
    # Class a still has a live worker (a1, a2): its index stays and keeps working.
    assert await worker_class(calls, "a1") in await r.hgetall(k.classes(SERVICE))
    await submit(calls, {"id": "late", "priority": 0, "requirements": {"pool": "standard"}})
    await assert_index_consistent(calls)
    assert (await claim_job(calls, "a1")).id == "late"
    await assert_index_consistent(calls)


async def test_a_class_past_the_cap_claims_by_the_walk(calls: Calls) -> None:
    for i in range(defaults.CLASS_INDEX_MAX + 1):
        await register(calls, f"w{i}", caps=caps_with(tag=f"t{i}"))
    await submit(calls, *[{"id": f"j{i}", "priority": i} for i in range(defaults.CLASS_INDEX_MAX + 1)])
    for i in range(defaults.CLASS_INDEX_MAX + 1):
        assert (await claim_job(calls, f"w{i}")).id == f"j{defaults.CLASS_INDEX_MAX - i}"  # best first
    classes = await calls.client.hgetall(calls.keys.classes(SERVICE))
    assert len(classes) == defaults.CLASS_INDEX_MAX
    assert await worker_class(calls, f"w{defaults.CLASS_INDEX_MAX}") not in classes
    await assert_index_consistent(calls)


async def test_a_class_index_is_built_again_after_it_was_dropped(calls: Calls) -> None:
    await register(calls, "w")
    await submit(calls, "a", "b")
    assert (await claim_job(calls, "w")).id == "a"
    cls = await worker_class(calls, "w")
    assert await calls.worker_offline("w", "test")
    await calls.cleanup(100)
    assert await calls.client.hexists(calls.keys.classes(SERVICE), cls) == 0
    await register(calls, "w")
    assert (await claim_job(calls, "w")).id == "b"
    assert await calls.client.hexists(calls.keys.classes(SERVICE), cls) == 1
    await assert_index_consistent(calls)


async def test_the_index_of_a_worker_behind_1000_signatures_it_cannot_run_holds_only_its_own(calls: Calls) -> None:
    await register(calls, "w")  # pool "standard"
    await submit(calls, *[{"id": f"x{i}", "priority": 900, "requirements": {"pool": f"p-{i}"}} for i in range(1000)])
    await submit(calls, {"id": "mine", "priority": 1, "requirements": {"pool": "standard"}})
    assert (await claim_job(calls, "w")).id == "mine"
    await submit(calls, {"id": "next", "priority": 1, "requirements": {"pool": "standard"}})
    index = await assert_index_consistent(calls)
    assert [len(heads) for heads in index.values()] == [1]  # only "next": the 1,000 others are not walked
    assert (await claim_job(calls, "w")).id == "next"
