"""T9 (reliability.md): Redis frozen (SIGSTOP) for twice the lease while five workers run long
jobs, a sixth idles (claiming, so housekeeping, every half second) and a coordinator sweeps every
second; then SIGCONT.

Redis keeps its clock running while it is stopped, so when it wakes every lease looks expired: the
first sweep to run (the coordinator's, an idle worker's, a claim's) would requeue the jobs of
workers that are alive and well. What must hold (G5, no false death): 0 requeues, no attempt
counter above 1, every job completed once, each worker heartbeats again within 5 s of the wake,
the checker clean.
"""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest

from emp.model.events import EventType
from emp.model.job import JobStatus
from tests.chaos.harness import ChaosRun, sim_wire
from tests.coordinator_proc import CoordinatorProc
from tests.polling import wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

LEASE_S = 2
FREEZE_S = 2 * LEASE_S
RECONNECT_S = 5.0
"""reliability.md T9: the longest a worker may take to reach Redis again after the wake."""


async def test_a_frozen_redis_requeues_no_job_of_a_live_worker(tmp_path: Path) -> None:
    async with ChaosRun(tmp_path, lease_ms=LEASE_S * 1000) as run:
        assert run.calls is not None and run.client is not None and run.recorder is not None
        coordinator = CoordinatorProc("coordinator", tmp_path, run.redis.url, run.namespace)
        try:
            await coordinator.serving()
            run.start_worker("--id", "a", "--lease-ttl", str(LEASE_S), "--concurrency", "3")
            run.start_worker("--id", "b", "--lease-ttl", str(LEASE_S), "--concurrency", "3")
            # 7 s jobs: running before, during and after the 4 s freeze. The sixth slot stays idle and
            # claims every half second, so a claim's housekeeping sweeps right after the wake too.
            await run.submit([sim_wire(f"long{i}", steps=70, step_ms=100) for i in range(5)])

            async def five_running() -> list[str] | None:
                jobs = [await run.calls.get_job(j, events=0) for j in run.accepted]  # type: ignore[union-attr]
                # A tenth in (0.7 s): steady state, every worker has heartbeated since its claim.
                running = [
                    j.worker_id or ""
                    for j in jobs
                    if j and j.status == JobStatus.IN_PROGRESS and (j.progress or 0) >= 10
                ]
                return running if len(running) == 5 else None

            slots = await wait_for(five_running, timeout=30, what="five jobs running, a tenth in")

            paused_ms = await run.calls.server_time_ms()
            run.redis.pause()
            frozen_at = time.monotonic()
            try:
                # Not a wait for state: the fault itself is "Redis stopped for FREEZE_S".
                await _sleep_until(frozen_at + FREEZE_S)
            finally:
                run.redis.resume()
            woke_ms = paused_ms + FREEZE_S * 1000  # a heartbeat Redis ran after the wake is at least this late

            async def all_heartbeat_again() -> bool:
                for wid in slots:
                    seen = await run.client.hget(run.calls.keys.worker(wid), "last_seen")  # type: ignore[union-attr]
                    if seen is None or int(seen) < woke_ms:
                        return False
                return True

            await wait_for(all_heartbeat_again, timeout=RECONNECT_S, what="every worker to heartbeat after the wake")

            verdict = await run.finish(timeout=60)
            assert verdict.ok, verdict.summary() + run.worker_logs() + coordinator.log()[-3000:]
            assert verdict.outcomes == {"completed": 5}, verdict.summary()
            requeues = [e for e in run.recorder.events if e.type == EventType.JOB_REQUEUED]
            assert requeues == [], f"jobs of live workers were requeued: {requeues}\n{coordinator.log()[-3000:]}"
            for job_id in run.accepted:
                job = await run.calls.get_job(job_id, events=0)
                assert job is not None and job.attempt == 1 and job.lost == 0 and job.history == [], job
        finally:
            coordinator.stop()


async def _sleep_until(deadline: float) -> None:
    await anyio.sleep(max(0.0, deadline - time.monotonic()))
