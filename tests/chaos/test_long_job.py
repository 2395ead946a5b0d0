"""T13 (reliability.md), scaled: jobs that run many times their lease stay owned while they heartbeat.

A GPU job runs for minutes under a lease of seconds; only the worker's heartbeats keep it. Scaled
down: a lease of 1 s, the worker's own heartbeat (every lease / 3), jobs of 6 s with a progress
event every 100 ms, three at once in one process (its slots heartbeat one after another). No lease
may lapse (0 requeues, 1 attempt each), progress only goes up and reaches 100 % before the
completion, and the checker is clean.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from emp.model.events import EventType
from emp.model.job import JobStatus
from tests.chaos.harness import ChaosRun, sim_wire

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]

LEASE_S = 1.0
JOB_S = 6.0
STEP_MS = 100
JOBS = 3


async def test_jobs_of_six_leases_heartbeat_through_with_no_requeue_and_reach_100_percent(tmp_path: Path) -> None:
    async with ChaosRun(tmp_path, lease_ms=LEASE_S * 1000) as run:
        assert run.calls is not None and run.recorder is not None
        run.start_worker("--id", "gpu", "--concurrency", str(JOBS), "--lease-ttl", str(LEASE_S))
        steps = int(JOB_S * 1000 / STEP_MS)
        await run.submit([sim_wire(f"long{i}", steps=steps, step_ms=STEP_MS) for i in range(JOBS)])
        verdict = await run.finish(timeout=60)
        assert verdict.ok, verdict.summary() + run.worker_logs()
        assert verdict.outcomes == {"completed": JOBS}, verdict.summary()

        events = run.recorder.events
        requeued = [e for e in events if e.type in (EventType.JOB_REQUEUED, EventType.JOB_RELEASED)]
        assert not requeued, f"a healthy long job lost its lease: {requeued}"
        for i in range(JOBS):
            job_id = f"long{i}"
            job = await run.calls.get_job(job_id, events=0)
            assert job is not None and job.status == JobStatus.COMPLETED, job
            assert job.attempt == 1 and job.lost == 0 and job.worker_id and job.progress == 100, job
            assert job.started_at and job.finished_at
            ran_s = (job.finished_at - job.started_at) / 1000
            assert ran_s >= JOB_S * 0.9, f"{job_id} ran {ran_s:.1f} s (Redis TIME): not the long job meant"
            mine = [e for e in events if e.job == job_id]
            progress = [float(e.data["progress"]) for e in mine if e.type == EventType.JOB_PROGRESS]
            assert progress == sorted(progress) and progress[-1] == 100, progress
            assert len(progress) >= 3, f"{job_id}: progress written only {len(progress)} times"
            kinds = [e.type for e in mine if e.type != EventType.JOB_PROGRESS]
            assert kinds == [EventType.JOB_SUBMITTED, EventType.JOB_STARTED, EventType.JOB_COMPLETED], kinds
            assert mine[-1].type == EventType.JOB_COMPLETED and mine[-2].type == EventType.JOB_PROGRESS
