"""Helpers of the Function tests (one module per .lua file): building and submitting jobs,
registering and claiming, reading raw keys and streams. Test modules import them from here;
conftest.py holds only fixtures.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from emp.model.job import parse_submission
from emp.model.requirements import canonicalize
from emp.redis.calls import Calls, ClaimedJob, ClaimResult, NoJob
from tests.polling import wait_for

MAX_PAYLOAD = 1 << 20
LEASE_MS = 30_000
WORKER_TTL_MS = 30_000
SERVICE = "comfyui"

BASE_CAPS: dict[str, Any] = {
    "hardware": {"gpu_model": "RTX 4090", "gpu_memory_gb": 24, "ram_gb": 64, "cpu_cores": 16},
    "models": {"comfyui": ["sdxl", "sd15"]},
    "pool": "standard",
}


# -- building jobs ----------------------------------------------------------------------------


def wire(job_id: str | None = None, service: str = SERVICE, **fields: Any) -> dict[str, Any]:
    """A submit wire dict built the way clients build it: parse_submission(...).to_wire(...).

    ``fields`` are submission fields (payload and requirements as Python objects).
    """
    sub: dict[str, Any] = {"service": service, **fields}
    if job_id is not None:
        sub["id"] = job_id
    return parse_submission(sub).to_wire(MAX_PAYLOAD)


def raw_wire(job_id: str, service: str = SERVICE, **fields: Any) -> dict[str, Any]:
    """A wire dict built by hand, for what a client that skips its own checks could send."""
    w: dict[str, Any] = {
        "id": job_id,
        "service": service,
        "priority": 50,
        "payload": "{}",
        "requirements": "{}",
        "max_attempts": 3,
    }
    w.update(fields)
    return w


async def submit(calls: Calls, *jobs: dict[str, Any] | str, **common: Any) -> list[str]:
    """Submit jobs in one call. Each job is a job id (str) or a dict of submission fields
    (``id`` included); ``common`` fields apply to every job unless the job sets them."""
    wires = []
    for job in jobs:
        fields = {"id": job} if isinstance(job, str) else dict(job)
        merged = {**common, **fields}
        wires.append(wire(merged.pop("id", None), **merged))
    return await calls.submit(wires, MAX_PAYLOAD)


def caps_with(**extra: Any) -> dict[str, Any]:
    caps = json.loads(json.dumps(BASE_CAPS))
    caps.update(extra)
    return caps


async def register(
    calls: Calls,
    worker_id: str,
    services: tuple[str, ...] | list[str] = (SERVICE,),
    caps: dict[str, Any] | None = None,
    ttl_ms: int = WORKER_TTL_MS,
    machine_id: str = "m1",
    wake_token: str | None = None,
) -> dict[str, Any]:
    """Register a worker; ``caps`` default to BASE_CAPS; ``services`` are put into caps too."""
    full = dict(caps if caps is not None else BASE_CAPS)
    full.setdefault("services", list(services))
    await calls.register_worker(worker_id, machine_id, list(services), full, wake_token or f"tok-{worker_id}", ttl_ms)
    return full


async def claim(
    calls: Calls, worker_id: str, request_id: str | None = None, lease_ms: int = LEASE_MS, start: bool = True
) -> ClaimResult:
    return await calls.claim(worker_id, request_id or uuid.uuid4().hex, lease_ms, start)


async def claim_job(calls: Calls, worker_id: str, **kw: Any) -> ClaimedJob:
    """Claim and insist on getting a job."""
    got = await claim(calls, worker_id, **kw)
    assert isinstance(got, ClaimedJob), f"{worker_id} expected a job, got {got!r}"
    return got


async def claim_ids(calls: Calls, worker_id: str, limit: int = 1000) -> list[str]:
    """Claim (and complete) until the worker gets nothing; the ids in the order it got them."""
    out: list[str] = []
    for _ in range(limit):
        got = await claim(calls, worker_id)
        if isinstance(got, NoJob):
            return out
        assert isinstance(got, ClaimedJob), got
        out.append(got.id)
        await calls.complete(got.id, got.attempt, worker_id)
    raise AssertionError(f"still getting jobs after {limit} claims")


# -- reading raw state ------------------------------------------------------------------------


async def job_hash(calls: Calls, job_id: str) -> dict[str, str]:
    return dict(await calls.client.hgetall(calls.keys.job(job_id)))


async def status(calls: Calls, job_id: str) -> str:
    return str(await calls.client.hget(calls.keys.job(job_id), "status"))


async def events(calls: Calls, etype: str | None = None, job_id: str | None = None) -> list[dict[str, str]]:
    """Entries of the namespace's `events` stream (fields, plus ``_id``), optionally filtered."""
    out = []
    for eid, fields in await calls.client.xrange(calls.keys.events):
        if etype is not None and fields.get("type") != etype:
            continue
        if job_id is not None and fields.get("job") != job_id:
            continue
        out.append({"_id": eid, **fields})
    return out


async def job_events(calls: Calls, job_id: str) -> list[dict[str, str]]:
    """Entries of one job's own stream (``job:<id>:events``)."""
    return [{"_id": eid, **f} for eid, f in await calls.client.xrange(calls.keys.job_events(job_id))]


async def server_ms(calls: Calls) -> int:
    sec, usec = await calls.client.time()
    return int(sec) * 1000 + int(usec) // 1000


async def server_clock_past(calls: Calls, ms: float) -> None:
    """Wait until the server's clock (the Functions' only clock) has passed ``ms``."""

    async def past() -> bool:
        return await server_ms(calls) > ms

    await wait_for(past, what=f"the server clock to pass {ms:.0f} ms")


def sig_of(service: str, requirements: Any = None) -> str:
    """The signature the submit Function computes: sha1(service "\\n" canonical)[:16]."""
    text = canonicalize(requirements).text
    return hashlib.sha1(f"{service}\n{text}".encode()).hexdigest()[:16]


async def queue_ids(calls: Calls, service: str = SERVICE, requirements: Any = None) -> list[str]:
    members = await calls.client.zrange(calls.keys.queue(service, sig_of(service, requirements)), 0, -1)
    return [m[13:] for m in members]


async def namespace_keys(calls: Calls) -> set[str]:
    return {k async for k in calls.client.scan_iter(match=calls.keys.prefix + "*", count=1000)}


async def job_state(calls: Calls, job_id: str) -> dict[str, Any]:
    """Everything a fenced call could change about one job: compare before/after a refusal."""
    return {
        "hash": await job_hash(calls, job_id),
        "lease": await calls.client.zscore(calls.keys.leases, job_id),
        "scheduled": await calls.client.zscore(calls.keys.scheduled, job_id),
        "events": await calls.client.xlen(calls.keys.events),
        "job_events": await calls.client.xlen(calls.keys.job_events(job_id)),
        "queue": await calls.client.zrange(calls.keys.queue(SERVICE, sig_of(SERVICE)), 0, -1),
        "done": [await calls.client.zscore(calls.keys.done(s), job_id) for s in ("completed", "failed", "cancelled")],
    }


async def stale_setup(calls: Calls, job_id: str = "a") -> tuple[ClaimedJob, ClaimedJob]:
    """A job whose first attempt (by w1) was released and that w2 now runs as attempt 2."""
    await register(calls, "w1")
    await register(calls, "w2")
    await submit(calls, job_id)
    first = await claim_job(calls, "w1")
    await calls.release(job_id, first.attempt, "w1", "test")
    second = await claim_job(calls, "w2")
    assert second.id == job_id and second.attempt == first.attempt + 1
    return first, second


UNWORKABLE_REQ = {"hardware": {"gpu_memory_gb": 80}}
"""Requirements no registered test worker meets (BASE_CAPS has less GPU memory)."""
UNWORKABLE_SIG = sig_of(SERVICE, UNWORKABLE_REQ)


def unworkable_queue(calls: Calls, sig: str = UNWORKABLE_SIG) -> str:
    """The unworkable queue of ``sig`` (default: the signature of UNWORKABLE_REQ)."""
    return calls.keys.unworkable_queue(SERVICE, sig)
