"""T10 (reliability.md): one worker cut off from Redis (a network partition) for longer than its lease.

Worker A reaches Redis through a FaultProxy; worker B directly. While A runs a job, the proxy
black-holes A's connections (bytes dropped both ways, sockets left open: A only notices through its
reply timeout) for lease + 5 s, then heals. What must hold:

- A's job is re-run by B (the lease lapses, the sweep requeues it) and completes once;
- A's own late completion (its handler ran on: nothing could tell it) is fenced: refused as STALE;
- A claims nothing while it cannot heartbeat;
- after the heal A works again: its registration lapsed meanwhile (marked offline by B's
  maintenance), so it registers again and takes new jobs.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import pytest

from emp.bench.fault_proxy import FaultProxy
from emp.model.events import EventType
from emp.model.job import Job, JobStatus
from tests.chaos.harness import ChaosRun, sim_wire
from tests.polling import wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

LEASE_S = 2.0
PARTITION_S = LEASE_S + 5.0
"""How long A is cut off (reliability.md: lease + 5 s)."""
A_ENV = {
    "EMP_REDIS_TIMEOUT_S": "0.5",  # A notices the partition through its reply timeout
    "EMP_WORKER_TTL_S": "1",  # A's registration lapses early in the partition: it must register again
}


def _job_is(run: ChaosRun, job_id: str, test: Callable[[Job], bool]) -> Callable[[], Awaitable[bool]]:
    calls = run.calls
    assert calls is not None

    async def check() -> bool:
        job = await calls.get_job(job_id, events=0)
        return job is not None and test(job)

    return check


def _event_after(run: ChaosRun, start: int, kind: EventType, worker: str) -> Callable[[], Awaitable[bool]]:
    recorder = run.recorder
    assert recorder is not None

    async def check() -> bool:
        return any(e.type == kind and e.worker == worker for e in recorder.events[start:])

    return check


async def test_a_partitioned_worker_is_fenced_replaced_and_comes_back(tmp_path: Path) -> None:
    async with ChaosRun(tmp_path, lease_ms=LEASE_S * 1000) as run:
        assert run.calls is not None and run.recorder is not None
        calls, recorder = run.calls, run.recorder
        with FaultProxy(run.redis.port) as proxy:
            a = run.start_worker("--id", "a", "--lease-ttl", str(LEASE_S), env=A_ENV, redis_url=proxy.url())
            # Long enough to be running when the partition starts, short enough that A's zombie run
            # (it cannot learn it lost the lease while cut off) overlaps B's attempt by less than a lease.
            await run.submit([sim_wire("long", steps=25, step_ms=100)])
            await wait_for(
                _job_is(run, "long", lambda j: j.worker_id == "a" and bool(j.progress)),
                timeout=30,
                what="A to be running the job",
            )
            b = run.start_worker("--id", "b", "--lease-ttl", str(LEASE_S))

            proxy.set_mode("blackhole")
            cut_at, cut_index = time.monotonic(), len(recorder.events)
            await run.submit([sim_wire("during", steps=2, step_ms=50)])

            # B re-runs A's job once the lease lapsed, and takes the job submitted meanwhile.
            await wait_for(
                _job_is(run, "long", lambda j: j.status == JobStatus.COMPLETED and j.worker_id == "b"),
                timeout=40,
                what="B to complete the partitioned worker's job",
            )
            await wait_for(
                _job_is(run, "during", lambda j: j.status == JobStatus.COMPLETED), timeout=20, what="'during'"
            )
            # A's registration lapsed and B's maintenance said so: A must register again after the heal.
            await wait_for(
                _event_after(run, cut_index, EventType.WORKER_OFFLINE, "a"), timeout=20, what="A marked offline"
            )
            await anyio.sleep(max(0.0, PARTITION_S - (time.monotonic() - cut_at)))  # the fault's length
            heal_index = len(recorder.events)
            proxy.set_mode("pass")

            # After the heal: A's late complete is refused, A registers again.
            assert run.workers is not None
            workers = run.workers

            async def a_fenced() -> bool:
                return "job long attempt 1: STALE" in workers.log(0)

            await wait_for(a_fenced, timeout=30, what="A's late complete to be refused")
            await wait_for(
                _event_after(run, heal_index, EventType.WORKER_REGISTERED, "a"), timeout=30, what="A to re-register"
            )

            # A works again: with B gone, A runs the next jobs.
            b.send_signal(signal.SIGTERM)
            assert b.wait(timeout=30) == 0
            await run.submit([sim_wire(f"after{i}", steps=2, step_ms=50) for i in range(2)])
            verdict = await run.finish(timeout=40)
            assert a.poll() is None, "A survived the partition"
        logs = run.worker_logs()
        assert verdict.ok, verdict.summary() + logs
        assert verdict.outcomes == {"completed": 4}, verdict.summary() + logs
        long = await calls.get_job("long", events=0)
        assert long is not None and long.attempt == 2 and long.lost == 1 and long.worker_id == "b", logs
        assert long.history and long.history[0]["outcome"] == "lease_expired", long.history
        for job_id in ("after0", "after1"):
            job = await calls.get_job(job_id, events=0)
            assert job is not None and job.worker_id == "a" and job.attempt == 1, logs

    events = recorder.events
    completions = [(e.attempt, e.worker) for e in events if e.job == "long" and e.type == EventType.JOB_COMPLETED]
    assert completions == [(2, "b")], "one completion, by B: A's was fenced"
    # A claimed nothing while it was cut off.
    cut_off = events[cut_index:heal_index]
    assert not [e for e in cut_off if e.worker == "a" and e.type in (EventType.JOB_STARTED, EventType.JOB_ASSIGNED)]
    during = [e.worker for e in events if e.job == "during" and e.type == EventType.JOB_STARTED]
    assert during == ["b"], logs
