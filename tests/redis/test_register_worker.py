"""emp_register_worker: a worker announces itself; its match cache is dropped on re-registration."""

from __future__ import annotations

import json

import pytest

from emp.errors import JobValidationError
from emp.redis.calls import Calls, ClaimedJob, NoJob
from tests.redis.helpers import (
    SERVICE,
    caps_with,
    claim,
    events,
    namespace_keys,
    register,
    server_ms,
    sig_of,
    submit,
)

pytestmark = pytest.mark.anyio


async def test_registration_writes_the_worker_its_deadline_and_an_event(calls: Calls) -> None:
    caps = caps_with(
        services=[SERVICE, "a1111"],
        workflow_id="wf-1",
        customer_access={"isolation": "strict", "allowed_customers": ["acme"], "denied_customers": []},
    )
    t0 = await server_ms(calls)
    await calls.register_worker("w", "m1", [SERVICE, "a1111"], caps, "tok", 30_000)
    w = await calls.client.hgetall(calls.keys.worker("w"))
    assert w["id"] == "w" and w["machine_id"] == "m1" and w["services"] == f"{SERVICE},a1111"
    assert json.loads(w["caps"]) == caps
    assert w["wake"] == "tok" and w["status"] == "idle" and w["job"] == ""
    # Precomputed restrictions (so a claim does not decode the capabilities for them).
    assert w["wf"] == "wf-1" and w["cr"] == "1" and json.loads(w["allowed"]) == ["acme"]
    assert int(w["registered_at"]) >= t0
    deadline = await calls.client.zscore(calls.keys.workers, "w")
    assert t0 + 30_000 <= deadline <= await server_ms(calls) + 30_000
    assert await calls.client.ttl(calls.keys.worker("w")) == -1
    ev = (await events(calls, "worker_registered"))[0]
    assert ev["worker"] == "w" and json.loads(ev["data"]) == {"machine_id": "m1", "services": f"{SERVICE},a1111"}


async def test_plain_worker_has_no_restrictions(calls: Calls) -> None:
    await register(calls, "w")
    w = await calls.client.hgetall(calls.keys.worker("w"))
    assert w["wf"] == "" and w["cr"] == "0" and w["allowed"] == ""


@pytest.mark.parametrize(
    ("services", "caps", "ttl"),
    [
        ([SERVICE], "[]", 30_000),
        ([SERVICE], "not json", 30_000),
        ([SERVICE], '"caps"', 30_000),
        ([], "{}", 30_000),
        ([SERVICE], "{}", 0),
    ],
)
async def test_bad_registration_is_refused_and_writes_nothing(
    calls: Calls, services: list[str], caps: str, ttl: int
) -> None:
    with pytest.raises(JobValidationError):
        await calls._fcall(  # the raw arguments, with Calls' error mapping
            "emp_register_worker",
            [calls.keys.worker("w")],
            calls.keys.prefix,
            "w",
            "m1",
            ",".join(services),
            caps,
            "tok",
            ttl,
        )
    assert await namespace_keys(calls) == set()


async def test_re_registration_drops_the_match_cache(calls: Calls) -> None:
    await register(calls, "w", caps=caps_with(hardware={"gpu_memory_gb": 24}))
    await submit(calls, {"id": "big", "requirements": {"hardware": {"gpu_memory_gb": 48}}})
    assert isinstance(await claim(calls, "w"), NoJob)
    sig = sig_of(SERVICE, {"hardware": {"gpu_memory_gb": 48}})
    assert await calls.client.hget(calls.keys.prefix + "wm:w", sig) == "0"
    # The GPU was swapped: new capabilities take effect at once.
    await register(calls, "w", caps=caps_with(hardware={"gpu_memory_gb": 80}))
    assert not await calls.client.exists(calls.keys.prefix + "wm:w")
    got = await claim(calls, "w")
    assert isinstance(got, ClaimedJob) and got.id == "big"


async def test_re_registration_after_going_offline_makes_it_live_again(calls: Calls) -> None:
    await register(calls, "w")
    await calls.worker_offline("w", "restart")
    assert await calls.client.ttl(calls.keys.worker("w")) > 0
    await register(calls, "w")
    assert await calls.client.ttl(calls.keys.worker("w")) == -1
    assert (await calls.client.hgetall(calls.keys.worker("w")))["status"] == "idle"
    assert [w.id for w in await calls.live_workers()] == ["w"]


async def test_a_worker_that_can_run_unworkable_jobs_revives_them_when_it_registers(calls: Calls) -> None:
    big = {"hardware": {"gpu_memory_gb": 80}}
    await submit(calls, {"id": "u1", "priority": 60}, {"id": "u2"}, requirements=big)
    await submit(calls, {"id": "other", "requirements": {"hardware": {"gpu_memory_gb": 200}}})
    for sig in (sig_of(SERVICE, big), sig_of(SERVICE, {"hardware": {"gpu_memory_gb": 200}})):
        assert (await calls.mark_unworkable(SERVICE, sig, grace_ms=0))[0] == "OK"
    await register(calls, "small", caps=caps_with(hardware={"gpu_memory_gb": 24}))
    assert await calls.client.zcard(calls.keys.unworkable) == 3
    await register(calls, "big", caps=caps_with(hardware={"gpu_memory_gb": 96}))
    # Its jobs are back in their places at once; the job it cannot run stays unworkable.
    assert await calls.client.zrange(calls.keys.unworkable, 0, -1) == ["other"]
    assert [e["job"] for e in await events(calls, "job_requeued")] == ["u1", "u2"]
    got = await claim(calls, "big")
    assert isinstance(got, ClaimedJob) and got.id == "u1"


async def test_a_worker_whose_service_is_not_up_registers_paused(calls: Calls) -> None:
    """It is live (its capabilities count) but not seen as taking jobs, and not woken, until
    its first claim once the service is up."""
    caps = {"services": [SERVICE]}
    await calls.register_worker("w", "m1", [SERVICE], caps, "tok", 30_000, paused=True)
    assert (await calls.client.hget(calls.keys.worker("w"), "status")) == "paused"
    assert [w.id for w in await calls.live_workers()] == ["w"]
    await submit(calls, "a")
    assert await calls.client.llen(calls.keys.wake("tok")) == 0
    got = await claim(calls, "w")
    assert getattr(got, "id", None) == "a"
    await calls.register_worker("w", "m1", [SERVICE], caps, "tok", 30_000)
    assert (await calls.client.hget(calls.keys.worker("w"), "status")) == "idle"
