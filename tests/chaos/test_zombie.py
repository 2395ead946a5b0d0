"""T2 (reliability.md): a worker SIGSTOPped mid-job for twice its lease wakes up as a zombie and is fenced.

The zombie's lease lapses while it is frozen; the other worker requeues and completes the job. When
the zombie wakes (SIGCONT) it learns from its first heartbeat or progress write that the attempt is
no longer its own (``stale``) and must stop the handler at once: no progress or completion of its
is accepted (no event with its worker id after the requeue), and its execution ends within about
one heartbeat interval of waking, so it overlapped the new attempt by at most a lease plus one
heartbeat. Then it goes on working: it is a healthy worker again.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import anyio
import pytest

from emp import defaults
from emp.model.events import EventType
from emp.model.history import parse_executions
from emp.model.job import JobStatus
from tests.chaos.harness import ChaosRun, sim_wire
from tests.polling import wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]

LEASE_S = 1.0
HEARTBEAT_S = LEASE_S * defaults.HEARTBEAT_FRACTION
PAUSE_S = 2 * LEASE_S
STOP_SLACK_S = 0.5
"""Beyond one heartbeat interval, for a process that just woke on a loaded 2-core machine."""


async def test_a_paused_worker_is_fenced_after_its_lease_and_stops_its_handler_on_waking(tmp_path: Path) -> None:
    # The checker's overlap bound: the lease plus a heartbeat (the lease was renewed up to one interval
    # before the freeze) plus a heartbeat for the zombie to learn it lost and stop.
    async with ChaosRun(tmp_path, lease_ms=(LEASE_S + 2 * HEARTBEAT_S) * 1000) as run:
        assert run.calls is not None and run.recorder is not None
        calls, recorder = run.calls, run.recorder
        zombie = run.start_worker("--id", "zombie", "--lease-ttl", str(LEASE_S))
        await run.submit([sim_wire("z", steps=60, step_ms=100)])  # 6 s: runs through the freeze

        async def zombie_mid_job() -> bool:
            job = await calls.get_job("z", events=0)
            return bool(job and job.worker_id == "zombie" and job.status == JobStatus.IN_PROGRESS and job.progress)

        await wait_for(zombie_mid_job, timeout=30, what="the zombie to be mid-job")
        run.start_worker("--id", "rescuer", "--lease-ttl", str(LEASE_S))

        async def rescuer_up() -> bool:
            return any(e.type == EventType.WORKER_REGISTERED and e.worker == "rescuer" for e in recorder.events)

        await wait_for(rescuer_up, timeout=30, what="the rescuer to register")

        zombie.send_signal(signal.SIGSTOP)
        stopped_at = time.monotonic()

        async def taken_over() -> bool:
            job = await calls.get_job("z", events=0)
            return bool(job and job.worker_id == "rescuer" and job.attempt == 2)

        await wait_for(taken_over, timeout=15, what="the rescuer to take the job over")
        taken_over_s = time.monotonic() - stopped_at
        await anyio.sleep(max(0.0, stopped_at + PAUSE_S - time.monotonic()))  # the fault's schedule: 2 x lease
        zombie.send_signal(signal.SIGCONT)
        woke_ms = time.time() * 1000

        # The zombie is a healthy worker again: it runs later jobs (the rescuer is busy with z).
        await run.submit([sim_wire(f"after{i}", steps=2, step_ms=50) for i in range(4)])
        verdict = await run.finish(timeout=60)
        logs = run.worker_logs()
        assert verdict.ok, verdict.summary() + logs
        assert verdict.outcomes == {"completed": 5}, verdict.summary()

        job = await calls.get_job("z", events=0)
        assert job is not None and job.attempt == 2 and job.worker_id == "rescuer" and job.lost == 1, job
        assert job.history[0]["outcome"] == "lease_expired"
        assert taken_over_s < LEASE_S + 3, f"the job was taken over {taken_over_s:.1f} s after the freeze"

        # Fenced: after the requeue, nothing of the zombie's about z was accepted, and only the rescuer completed it.
        z_events = [e for e in recorder.events if e.job == "z"]
        requeue = next(i for i, e in enumerate(z_events) if e.type == EventType.JOB_REQUEUED)
        assert z_events[requeue].data.get("reason") == "lease_expired"
        late = [e for e in z_events[requeue + 1 :] if e.worker == "zombie"]
        assert not late, f"the zombie wrote after losing its lease: {late}"
        completions = [e for e in z_events if e.type == EventType.JOB_COMPLETED]
        assert [(e.worker, e.attempt) for e in completions] == [("rescuer", 2)]
        assert run.workers is not None and "job z attempt 1 stopped: lost" in run.workers.log(0), logs
        assert any(e.type == EventType.JOB_COMPLETED and e.worker == "zombie" for e in recorder.events), (
            "the zombie completed later jobs after waking"
        )

        # Its handler stopped within about one heartbeat of waking.
        runs = {(x.job, x.attempt, x.runner): x for x in parse_executions(run.exec_log.read_text().splitlines())}
        zombie_run = runs[("z", 1, str(zombie.pid))]
        assert zombie_run.end_ms is not None, "the zombie's execution never ended"
        stop_s = (zombie_run.end_ms - woke_ms) / 1000
        assert stop_s <= HEARTBEAT_S + STOP_SLACK_S, f"the zombie ran on {stop_s:.2f} s after waking\n{logs}"
        second = next(x for (j, a, _), x in runs.items() if j == "z" and a == 2)
        overlap_s = (zombie_run.end_ms - second.start_ms) / 1000
        assert 0 < overlap_s <= LEASE_S + 2 * HEARTBEAT_S + STOP_SLACK_S, f"overlap {overlap_s:.2f} s"
        print(f"taken over {taken_over_s:.2f} s after the freeze; zombie stopped {stop_s:.2f} s after waking;", end=" ")
        print(f"overlap {overlap_s:.2f} s")
