"""Scale check (issue 13 part 3): 100 workers and 10,000 jobs through one Redis, the checker clean.

The 100 workers are 4 `emp worker` processes of 25 slots each (`--concurrency 25`: each slot is a
worker of its own, with its own id, registration, claims and leases); jobs are short (one 10 ms step).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from emp.model.events import EventType
from tests.chaos.harness import ChaosRun, sim_wire
from tests.polling import wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(180)]

PROCESSES = 4
SLOTS = 25
JOBS = 10_000
BATCH = 1_000


async def test_100_workers_run_10k_jobs_each_exactly_once(tmp_path: Path) -> None:
    async with ChaosRun(tmp_path, lease_ms=10_000) as run:
        assert run.calls is not None and run.recorder is not None
        for p in range(PROCESSES):
            run.start_worker("--id", f"p{p}", "--concurrency", str(SLOTS), "--lease-ttl", "10")

        async def all_registered() -> bool:
            return len(await run.calls.live_workers()) >= PROCESSES * SLOTS  # type: ignore[union-attr]

        await wait_for(all_registered, timeout=60, what="100 worker slots to register")
        t0 = time.monotonic()
        for start in range(0, JOBS, BATCH):
            await run.submit([sim_wire(f"j{i}", steps=1, step_ms=10) for i in range(start, start + BATCH)])
        verdict = await run.finish(timeout=120)
        elapsed = time.monotonic() - t0

        assert verdict.ok, verdict.summary() + run.worker_logs()
        assert verdict.accepted == JOBS and verdict.outcomes == {"completed": JOBS}, verdict.summary()
        assert verdict.attempts == JOBS, verdict.summary()  # no job needed a second attempt
        workers = {e.worker for e in run.recorder.events if e.type == EventType.JOB_STARTED}
        expected = {f"p{p}-{s}" for p in range(PROCESSES) for s in range(SLOTS)}
        # the work spread over the fleet: every one of the 100 slots ran jobs
        assert workers == expected, f"{len(workers)} workers ran jobs: {sorted(expected - workers)[:10]} never did"
        print(f"10,000 jobs on 100 workers in {elapsed:.1f} s ({JOBS / elapsed:.0f} jobs/s)")
