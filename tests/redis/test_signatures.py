"""emp_signatures: every live and unworkable signature with its requirements, depth and head age."""

from __future__ import annotations

import pytest

from emp.model.requirements import canonicalize
from emp.redis.calls import Calls
from tests.redis.helpers import (
    SERVICE,
    claim_job,
    job_hash,
    register,
    sig_of,
    submit,
)

pytestmark = pytest.mark.anyio

REQ = {"hardware": {"gpu_memory_gb": 48}}


async def rows_by_sig(calls: Calls) -> dict[str, dict[str, object]]:
    return {str(r["sig"]): r for r in await calls.signatures()}


async def test_empty(calls: Calls) -> None:
    assert await calls.signatures() == []


async def test_rows_for_each_service_and_signature(calls: Calls) -> None:
    await submit(calls, "p1", {"id": "r1", "requirements": REQ}, {"id": "r2", "requirements": REQ})
    await submit(calls, {"id": "o1", "service": "ollama"})
    rows = await rows_by_sig(calls)
    assert set(rows) == {sig_of(SERVICE), sig_of(SERVICE, REQ), sig_of("ollama")}
    r = rows[sig_of(SERVICE, REQ)]
    assert r["service"] == SERVICE and r["requirements"] == canonicalize(REQ).text
    assert r["pending"] == 2 and r["unworkable_count"] == 0
    assert r["unworkable"] is False and r["reviving"] is False
    assert r["head_created_at"] == int((await job_hash(calls, "r1"))["created_at"])
    assert rows[sig_of(SERVICE)]["requirements"] == "{}"
    assert rows[sig_of("ollama")]["service"] == "ollama"


async def test_the_signature_of_an_emptied_queue_stays_with_no_head(calls: Calls) -> None:
    await register(calls, "w")
    await submit(calls, "a")
    await claim_job(calls, "w")
    r = (await rows_by_sig(calls))[sig_of(SERVICE)]
    assert r["pending"] == 0 and r["head_created_at"] == 0


async def test_unworkable_and_reviving_flags(calls: Calls) -> None:
    await submit(calls, *[{"id": f"j{i}", "requirements": REQ} for i in range(3)])
    sig = sig_of(SERVICE, REQ)
    await calls.mark_unworkable(SERVICE, sig, 0)
    r = (await rows_by_sig(calls))[sig]
    assert r["unworkable"] is True and r["reviving"] is False and r["pending"] == 0 and r["unworkable_count"] == 3
    assert r["requirements"] == canonicalize(REQ).text
    await calls.revive_unworkable(SERVICE, sig, page=1)
    r = (await rows_by_sig(calls))[sig]
    assert r["unworkable"] is False and r["reviving"] is True and r["pending"] == 1 and r["unworkable_count"] == 2
    assert r["requirements"] == canonicalize(REQ).text, "no '~' marker leaks out"
