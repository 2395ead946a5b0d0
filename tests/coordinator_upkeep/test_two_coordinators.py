"""Two `emp coordinator` processes against one Redis for a minute, with leases expiring all the time
and the leader killed (SIGKILL) after 20 s: every expired attempt is requeued exactly once (or,
at its last lost lease, failed once as worker_lost), never twice, none missed.

The load: every 200 ms a batch of new jobs is submitted and as many are claimed, each by a worker
of its own that then dies (it never heartbeats) with a lease of 300 to 800 ms. No worker ever
finishes anything: every attempt ends by its lease expiring. Claims requeue expired leases
themselves too (``_housekeeping.lua``): the coordinators' sweeps race with them and with each
other's, which is the point; each coordinator's log says how many it requeued, and both must have
done their part (the first leader before it was killed, the survivor after it took over).

The truth is the namespace's ``events`` stream: one job_started per attempt, and for each exactly
one job_requeued (reason lease_expired) or job_failed (failure_class worker_lost).
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx
import pytest

from emp import defaults
from emp.redis.calls import Calls, ClaimedJob
from tests.coordinator_proc import CoordinatorProc
from tests.polling import wait_for
from tests.redis.helpers import register, submit

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(150)]

LOAD_S = 60.0
KILL_AT_S = 20.0
BATCH_EVERY_S = 0.2
BATCH = 4
"""Jobs submitted and attempts made per batch (20 attempts a second)."""
LEASE_MS = (300, 800)
TAKEOVER_S = defaults.LEADER_LEASE_S + defaults.LEADER_ACQUIRE_INTERVAL_S + 5
"""The killed leader's lease lapses, then the survivor's next attempt wins it (plus slack for CI)."""


async def _leads(http: httpx.AsyncClient, c: CoordinatorProc) -> bool:
    resp = await http.get(f"{c.url}/health")
    assert resp.status_code == 200, resp.text
    return resp.json()["leader"] is True


@dataclass
class Load:
    """The producer's own account of what it did (the events stream is checked against it)."""

    attempts: set[tuple[str, int]]
    batches: int = 0
    next_job: int = 0


async def _produce(calls: Calls, load: Load, stop: anyio.Event) -> None:
    """A batch every BATCH_EVERY_S until ``stop``: BATCH new jobs, BATCH claims by dying workers."""
    rng = random.Random(20260101)
    tick = time.monotonic()
    while not stop.is_set():
        ids = [f"j{load.next_job + i:05d}" for i in range(BATCH)]
        load.next_job += BATCH
        await submit(calls, *ids)
        for _ in range(BATCH):
            worker = f"w-{uuid.uuid4().hex[:10]}"
            await register(calls, worker)
            got = await calls.claim(worker, uuid.uuid4().hex, rng.randint(*LEASE_MS))
            assert isinstance(got, ClaimedJob), got
            load.attempts.add((got.id, got.attempt))
        load.batches += 1
        tick += BATCH_EVERY_S
        await anyio.sleep(max(0.0, tick - time.monotonic()))  # pacing the load, not waiting for state


async def test_two_coordinators_with_the_leader_killed_requeue_every_expired_attempt_once(
    calls: Calls, redis_url: str, namespace: str, tmp_path: Path
) -> None:
    coordinators = [CoordinatorProc(name, tmp_path, redis_url, namespace) for name in ("c1", "c2")]
    try:
        for c in coordinators:
            await c.serving()
        async with httpx.AsyncClient(timeout=5) as http:

            async def one_leader() -> CoordinatorProc | None:
                leading = [c for c in coordinators if c.proc.poll() is None and await _leads(http, c)]
                return leading[0] if len(leading) == 1 else None

            await wait_for(one_leader, timeout=TAKEOVER_S, what="one of the two to lead")
            load = Load(attempts=set())
            stop = anyio.Event()
            t0 = time.monotonic()
            async with anyio.create_task_group() as tg:
                tg.start_soon(_produce, calls, load, stop)

                await anyio.sleep(KILL_AT_S)  # the schedule of the run: the kill comes at 20 s
                first: CoordinatorProc = await wait_for(one_leader, timeout=5, what="the leader at 20 s")
                first.proc.kill()  # SIGKILL: no resignation, the lease has to lapse
                first.proc.wait()
                killed_at = time.monotonic()
                survivor = next(c for c in coordinators if c is not first)
                assert await wait_for(lambda: _leads(http, survivor), timeout=TAKEOVER_S, what="the survivor to lead")
                took_over_s = time.monotonic() - killed_at

                await anyio.sleep(max(0.0, t0 + LOAD_S - time.monotonic()))  # the rest of the minute
                stop.set()

            async def no_lease_left() -> bool:
                return await calls.client.zcard(calls.keys.leases) == 0

            await wait_for(no_lease_left, timeout=max(LEASE_MS) / 1000 + 10, what="every lease to expire and go")
            assert await _leads(http, survivor), "the survivor still leads"

        # Every attempt made, by the events stream, ended exactly once by its lease.
        assert await calls.client.xlen(calls.keys.events) < defaults.EVENTS_MAXLEN, "the stream was not trimmed"
        started: Counter[tuple[str, int]] = Counter()
        ended: Counter[tuple[str, int]] = Counter()
        failed: set[str] = set()
        for _, fields in await calls.client.xrange(calls.keys.events):
            etype, job = fields.get("type"), fields.get("job", "")
            data = json.loads(fields.get("data") or "{}")
            if etype in ("job_started", "job_assigned"):
                started[(job, int(fields["attempt"]))] += 1
            elif etype == "job_requeued" and data.get("reason") == "lease_expired":
                ended[(job, int(fields["attempt"]))] += 1
            elif etype == "job_failed":
                assert data.get("failure_class") == "worker_lost", fields
                ended[(job, int(fields["attempt"]))] += 1
                failed.add(job)
        assert set(started) == load.attempts, "the stream holds exactly the attempts the producer made"
        assert all(n == 1 for n in started.values()), "each attempt started once"
        twice = {a: n for a, n in ended.items() if n > 1}
        missing = set(started) - set(ended)
        assert not twice, f"expired attempts ended more than once: {sorted(twice)[:10]}"
        assert not missing, f"expired attempts never requeued: {sorted(missing)[:10]}"
        assert set(ended) == set(started)
        for job in failed:
            attempts = sorted(a for j, a in started if j == job)
            assert attempts == list(range(1, defaults.MAX_LOST_LEASES + 1)), (job, attempts)
        assert load.batches >= LOAD_S / BATCH_EVERY_S * 0.5, f"the load kept its pace ({load.batches} batches)"
        assert failed, "some jobs lost their lease MAX_LOST_LEASES times"

        # Both coordinators swept: the first while it led, the survivor after it took over, with a later token.
        before, after = first.requeued(), survivor.requeued()
        assert sum(before.values()) > 0, f"{first.name} requeued nothing while it led"
        assert sum(after.values()) > 0, f"{survivor.name} requeued nothing after the kill"
        assert max(after) > max(before), (before, after)
        print(
            f"{len(started)} attempts; requeued by {first.name} {sum(before.values())}, by {survivor.name} "
            f"{sum(after.values())} (the rest by claims); took over in {took_over_s:.1f} s; {len(failed)} jobs failed"
        )
    finally:
        for c in coordinators:
            c.stop()
