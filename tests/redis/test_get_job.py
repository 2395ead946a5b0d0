"""emp_get_job: one job's fields, payload, requirements and recent events, at one instant."""

from __future__ import annotations

import pytest

from emp.model.job import Job, JobStatus
from emp.model.requirements import canonicalize
from emp.redis.calls import Calls
from tests.redis.helpers import (
    SERVICE,
    claim_job,
    register,
    submit,
)

pytestmark = pytest.mark.anyio

REQ = {"hardware": {"gpu_memory_gb": 16}, "negative_requirements": {"pool": "spot"}}


async def test_unknown_job_is_none(calls: Calls) -> None:
    assert await calls.get_job("nope") is None


async def test_pending_job(calls: Calls) -> None:
    await submit(calls, {"id": "a", "payload": {"prompt": "x"}, "requirements": REQ, "customer_id": "acme"})
    got = await calls.get_job("a")
    assert isinstance(got, Job)
    assert got.id == "a" and got.status == JobStatus.PENDING
    assert got.customer_id == "acme" and got.service == SERVICE
    assert got.payload == {"prompt": "x"}
    assert got.canonical.text == canonicalize(REQ).text
    assert got.events == []


async def test_events_in_order_and_limited(calls: Calls) -> None:
    await register(calls, "w")
    await submit(calls, "a")
    got = await claim_job(calls, "w")
    for p in (10, 20, 30):
        await calls.progress("a", got.attempt, "w", p)
    await calls.complete("a", got.attempt, "w", '{"ok":true}')
    full = await calls.get_job("a")
    assert full is not None
    types = [e.type for e in full.events]
    assert types == ["job_started", "job_progress", "job_progress", "job_progress", "job_completed"]
    ids = [e.id for e in full.events]
    assert ids == sorted(ids, key=lambda i: tuple(int(x) for x in i.split("-")))
    assert [e.data.get("progress") for e in full.events[1:4]] == [10, 20, 30]
    last2 = await calls.get_job("a", events=2)
    assert last2 is not None and [e.type for e in last2.events] == ["job_progress", "job_completed"]
    none = await calls.get_job("a", events=0)
    assert none is not None and none.events == []
    assert full.result == {"ok": True}


async def test_requirements_of_an_unworkable_signature_are_still_shown(calls: Calls) -> None:
    await submit(calls, {"id": "a", "requirements": REQ})
    sig = (await calls.get_job("a")).sig  # type: ignore[union-attr]
    await calls.mark_unworkable(SERVICE, sig or "", 0)
    got = await calls.get_job("a")
    assert got is not None and got.status == JobStatus.UNWORKABLE
    assert got.canonical.text == canonicalize(REQ).text
