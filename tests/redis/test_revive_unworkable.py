"""emp_revive_unworkable: a signature a live worker can run again, its jobs back in their places."""

from __future__ import annotations

import pytest

from emp.redis.calls import Calls
from tests.redis.helpers import (
    SERVICE,
    UNWORKABLE_REQ,
    UNWORKABLE_SIG,
    caps_with,
    claim,
    claim_ids,
    job_events,
    job_hash,
    register,
    submit,
    unworkable_queue,
)

pytestmark = pytest.mark.anyio

REQ, SIG, uq = UNWORKABLE_REQ, UNWORKABLE_SIG, unworkable_queue


async def test_revive_moves_them_back_in_order(calls: Calls) -> None:
    # The worker registers first: registering later would revive the signature by itself
    # (test_register_worker); here the detection is simulated by calling mark directly.
    await register(calls, "big", caps=caps_with(hardware={"gpu_memory_gb": 80}), wake_token="tok")
    await submit(calls, *[{"id": f"j{i}", "requirements": REQ} for i in range(4)])
    await submit(calls, {"id": "later-plain"})
    await calls.mark_unworkable(SERVICE, SIG, 0)
    await submit(calls, {"id": "j4", "requirements": REQ})  # straight to unworkable
    await claim(calls, "big")  # takes later-plain
    await claim(calls, "big")  # EMPTY: idle
    assert await calls.revive_unworkable(SERVICE, SIG) == ("OK", 5, 0)
    for i in range(5):
        assert (await job_hash(calls, f"j{i}"))["status"] == "pending"
        assert [e["type"] for e in await job_events(calls, f"j{i}")][-1] == "job_requeued"
    assert await calls.client.zcard(calls.keys.unworkable) == 0
    assert not await calls.client.exists(uq(calls))
    assert await calls.client.hget(calls.keys.usigs(SERVICE), SIG) is None, "flag gone once empty"
    assert await calls.client.hget(calls.keys.sigs(SERVICE), SIG) is not None
    assert await calls.client.llen(calls.keys.wake("tok")) == 1, "the matching idle worker is woken"
    assert await claim_ids(calls, "big") == [f"j{i}" for i in range(5)]
    assert await submit(calls, {"id": "j5", "requirements": REQ}) == ["pending"]


async def test_revive_in_pages_keeps_the_signature_reviving(calls: Calls) -> None:
    await submit(calls, *[{"id": f"j{i}", "requirements": REQ} for i in range(3)])
    await calls.mark_unworkable(SERVICE, SIG, 0)
    assert await calls.revive_unworkable(SERVICE, SIG, page=2) == ("OK", 2, 1)
    assert (await calls.client.hget(calls.keys.usigs(SERVICE), SIG)).startswith("~")
    # While reviving, new jobs are pending, not unworkable.
    assert await submit(calls, {"id": "new", "requirements": REQ}) == ["pending"]
    assert await calls.revive_unworkable(SERVICE, SIG, page=2) == ("OK", 1, 0)
    assert await calls.client.hget(calls.keys.usigs(SERVICE), SIG) is None
