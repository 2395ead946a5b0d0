"""T1 (reliability.md): a worker SIGKILLed mid-job loses nothing and commits nothing twice."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from emp.model.job import JobStatus
from tests.chaos.harness import ChaosRun, sim_wire
from tests.polling import wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]


async def test_sigkill_mid_job_requeues_once_and_the_run_checks_clean(tmp_path: Path) -> None:
    async with ChaosRun(tmp_path, lease_ms=2000) as run:
        assert run.calls is not None
        victim = run.start_worker("--id", "victim", "--lease-ttl", "2")
        run.start_worker("--id", "other", "--lease-ttl", "2")
        await run.submit([sim_wire(f"j{i}", steps=10, step_ms=100) for i in range(20)])

        calls = run.calls

        async def victim_running() -> str | None:
            for job_id in run.accepted:
                job = await calls.get_job(job_id, events=0)
                if job and job.worker_id == "victim" and job.status == JobStatus.IN_PROGRESS and job.progress:
                    return job_id
            return None

        killed_job = await wait_for(victim_running, timeout=30, what="the victim to be mid-job")
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)

        verdict = await run.finish(timeout=60)
        assert verdict.ok, verdict.summary() + run.worker_logs()
        assert verdict.outcomes == {"completed": 20}, verdict.summary()
        job = await run.calls.get_job(killed_job, events=0)
        assert job is not None and job.attempt == 2 and job.lost == 1 and job.worker_id == "other"
        assert job.history[0]["outcome"] == "lease_expired"
