"""emp_cancel: any non-terminal job ends cancelled; a running job's worker hears it by pub/sub."""

from __future__ import annotations

import json

import anyio
import pytest

from emp import defaults
from emp.errors import JobNotFound
from emp.redis.calls import Calls
from tests.redis.helpers import (
    SERVICE,
    claim_job,
    events,
    job_events,
    job_hash,
    job_state,
    namespace_keys,
    register,
    server_ms,
    sig_of,
    submit,
)

pytestmark = pytest.mark.anyio


async def assert_cancelled(calls: Calls, job_id: str, prev: str) -> dict[str, str]:
    h = await job_hash(calls, job_id)
    assert h["status"] == "cancelled" and h["failure_class"] == "cancelled"
    assert await calls.client.zscore(calls.keys.done("cancelled"), job_id) == int(h["finished_at"])
    assert 0 < await calls.client.ttl(calls.keys.job(job_id)) <= defaults.RETENTION_S
    ev = (await events(calls, "job_cancelled", job_id))[-1]
    assert json.loads(ev["data"])["from"] == prev
    assert [e["type"] for e in await job_events(calls, job_id)][-1] == "job_cancelled"
    return h


async def test_cancel_pending(calls: Calls) -> None:
    await submit(calls, {"id": "a", "workflow_id": "wf", "customer_id": "c"})
    assert await calls.cancel("a", "user changed their mind") == "pending"
    h = await assert_cancelled(calls, "a", "pending")
    assert h["error"] == "user changed their mind"
    assert await calls.client.zcard(calls.keys.queue(SERVICE, sig_of(SERVICE))) == 0
    assert await calls.client.zcard(calls.keys.heads(SERVICE)) == 0
    assert await calls.client.zcard(calls.keys.prefix + f"qwf:{SERVICE}:wf") == 0
    assert await calls.client.zcard(calls.keys.prefix + f"qc:{SERVICE}:c") == 0


async def test_cancel_pending_keeps_the_others_head(calls: Calls) -> None:
    await register(calls, "w")
    await submit(calls, "a", "b")
    await calls.cancel("a")
    assert (await claim_job(calls, "w")).id == "b"


async def test_cancel_scheduled(calls: Calls) -> None:
    await submit(calls, {"id": "a", "run_at": await server_ms(calls) + 60_000})
    assert await calls.cancel("a") == "scheduled"
    await assert_cancelled(calls, "a", "scheduled")
    assert await calls.client.zcard(calls.keys.scheduled) == 0


async def test_cancel_running_publishes_on_the_cancel_channel(calls: Calls) -> None:
    await register(calls, "w")
    await submit(calls, "a")
    got = await claim_job(calls, "w")
    pubsub = calls.client.pubsub()
    try:
        await pubsub.subscribe(calls.keys.cancel_channel)
        with anyio.fail_after(5):
            while (await pubsub.get_message(timeout=1)) is None:
                pass  # the subscribe confirmation
        assert await calls.cancel("a", "stop") == "in_progress"
        with anyio.fail_after(5):
            msg = None
            while msg is None:
                msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
        assert msg["channel"] == calls.keys.cancel_channel and msg["data"] == "a"
    finally:
        await pubsub.aclose()
    await assert_cancelled(calls, "a", "in_progress")
    assert await calls.client.zscore(calls.keys.leases, "a") is None
    w = await calls.client.hgetall(calls.keys.worker("w"))
    assert w["status"] == "idle" and w["job"] == ""
    ev = (await events(calls, "job_cancelled"))[-1]
    assert ev["worker"] == "w" and ev["attempt"] == str(got.attempt)


async def test_cancel_assigned(calls: Calls) -> None:
    await register(calls, "w")
    await submit(calls, "a")
    await claim_job(calls, "w", start=False)
    assert await calls.cancel("a") == "assigned"
    await assert_cancelled(calls, "a", "assigned")


async def test_cancel_unworkable(calls: Calls) -> None:
    await submit(calls, "a")
    await calls.mark_unworkable(SERVICE, sig_of(SERVICE), 0)
    assert await calls.cancel("a") == "unworkable"
    await assert_cancelled(calls, "a", "unworkable")
    assert await calls.client.zcard(calls.keys.unworkable) == 0
    assert await calls.client.zcard(calls.keys.prefix + f"uq:{SERVICE}:{sig_of(SERVICE)}") == 0


@pytest.mark.parametrize("end", ["completed", "failed", "cancelled"])
async def test_cancel_of_an_ended_job_is_none_and_changes_nothing(calls: Calls, end: str) -> None:
    await register(calls, "w")
    await submit(calls, "a")
    got = await claim_job(calls, "w")
    if end == "completed":
        await calls.complete("a", got.attempt, "w", '{"ok":1}')
    elif end == "failed":
        await calls.fail("a", got.attempt, "w", "malformed", "bad", 0.0)
    else:
        await calls.cancel("a")
    before = await job_state(calls, "a")
    assert await calls.cancel("a") is None
    assert await job_state(calls, "a") == before


async def test_cancel_of_an_unknown_job(calls: Calls) -> None:
    with pytest.raises(JobNotFound):
        await calls.cancel("nope")


async def keys_of_job(calls: Calls, job_id: str) -> list[str]:
    """Every key of the namespace that belongs to this one job (its hash, payload and stream)."""
    return sorted(k for k in await namespace_keys(calls) if k.endswith(":" + job_id))


@pytest.mark.parametrize("state", ["pending", "scheduled", "unworkable", "assigned", "in_progress"])
async def test_every_key_of_a_cancelled_job_expires(calls: Calls, state: str) -> None:
    """Leak: a job cancelled before any worker saw it had no stream when the TTLs were set, so the
    stream the cancel event then created never expired. Every key of the job must expire."""
    if state == "scheduled":
        await submit(calls, {"id": "a", "run_at": await server_ms(calls) + 60_000})
    else:
        await submit(calls, "a")
    if state == "unworkable":
        await calls.mark_unworkable(SERVICE, sig_of(SERVICE), 0)
    if state in ("assigned", "in_progress"):
        await register(calls, "w")
        await claim_job(calls, "w", start=state == "in_progress")
    assert await calls.cancel("a") == state
    keys = await keys_of_job(calls, "a")
    assert {calls.keys.job("a"), calls.keys.payload("a"), calls.keys.job_events("a")} <= set(keys)
    ttls = {k: await calls.client.ttl(k) for k in keys}
    assert all(0 < t <= defaults.RETENTION_S for t in ttls.values()), f"keys that never expire: {ttls}"
