"""T3 (reliability.md): SIGTERM with a grace period, checked as a whole run.

A worker with three slots runs two jobs that fit in the grace and one that does not, with more jobs
queued behind them. On SIGTERM it stops claiming at once (the queued jobs are never started by it),
the two short jobs complete, the long one is **released** when the grace runs out (requeued at once,
under a 30 s lease that never gets to lapse, no attempt used), and the process exits 0 within grace
+ 1 s, leaving no job active under it. A second worker then runs everything left; the checker judges
the whole record. (tests/integration/test_worker.py covers the basic drain and the second signal.)
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from emp.model.events import EventType
from emp.model.job import JobStatus
from tests.chaos.harness import ChaosRun, sim_wire
from tests.polling import wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]

GRACE_S = 2.0
LEASE_S = 30
"""Far longer than the test's waits: a job that comes back did so by its release, not its lease."""


async def test_sigterm_finishes_what_fits_releases_the_rest_and_exits_0_within_the_grace(tmp_path: Path) -> None:
    async with ChaosRun(tmp_path, lease_ms=LEASE_S * 1000) as run:
        assert run.calls is not None and run.recorder is not None
        calls, recorder = run.calls, run.recorder
        drainer = run.start_worker(
            "--id", "drainer", "--concurrency", "3", "--drain-timeout", str(GRACE_S), "--lease-ttl", str(LEASE_S)
        )
        # Two jobs of ~1.2 s fit in the grace; one of 5 s does not.
        await run.submit(
            [sim_wire("short0", steps=12, step_ms=100), sim_wire("short1", steps=12, step_ms=100)]
            + [sim_wire("long", steps=50, step_ms=100)]
        )

        async def all_three_running() -> bool:
            jobs = [await calls.get_job(j, events=0) for j in ("short0", "short1", "long")]
            return all(j is not None and j.status == JobStatus.IN_PROGRESS for j in jobs)

        await wait_for(all_three_running, timeout=30, what="the drainer to run all three jobs")
        await run.submit([sim_wire(f"queued{i}", steps=2, step_ms=50) for i in range(4)])  # behind them

        drainer.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        code = drainer.wait(timeout=GRACE_S + 15)
        exit_s = time.monotonic() - signalled
        await recorder.drain()
        assert code == 0, run.worker_logs()
        assert exit_s <= GRACE_S + 1, f"exited {exit_s:.2f} s after SIGTERM (grace {GRACE_S} s)\n{run.worker_logs()}"

        # At its exit: the short jobs done, the long one back in the queue unused, nothing active under it.
        statuses = {j: (await calls.get_job(j, events=0)) for j in ("short0", "short1", "long")}
        assert {j: r.status if r else None for j, r in statuses.items()} == {
            "short0": JobStatus.COMPLETED,
            "short1": JobStatus.COMPLETED,
            "long": JobStatus.PENDING,
        }
        long = statuses["long"]
        assert long is not None and long.tries == 0 and long.lost == 0 and long.worker_id in (None, "")
        assert long.history[-1]["outcome"] == "released", long.history
        assert await calls.client.zcard(calls.keys.leases) == 0, "a lease outlived the worker that held it"
        drainer_ids = {f"drainer-{i}" for i in range(3)}
        events = recorder.events
        released = [i for i, e in enumerate(events) if e.type == EventType.JOB_RELEASED]
        assert [(events[i].job, events[i].attempt) for i in released] == [("long", 1)], [events[i] for i in released]
        assert events[released[0]].worker in drainer_ids
        offline = [i for i, e in enumerate(events) if e.type == EventType.WORKER_OFFLINE and e.worker in drainer_ids]
        assert len(offline) == 3 and released[0] < min(offline), "the release came before the slots went offline"
        started = [e for e in events if e.type == EventType.JOB_STARTED and e.worker in drainer_ids]
        assert sorted(e.job or "" for e in started) == ["long", "short0", "short1"], "it claimed after SIGTERM"

        # A second worker runs what is left: the long job on its second attempt, not counted as a failure.
        run.start_worker("--id", "after", "--lease-ttl", str(LEASE_S))
        verdict = await run.finish(timeout=60)
        assert verdict.ok, verdict.summary() + run.worker_logs()
        assert verdict.outcomes == {"completed": 7}, verdict.summary()
        long = await calls.get_job("long", events=0)
        assert long is not None and long.attempt == 2 and long.tries == 0 and long.worker_id == "after"
        print(f"exited 0 {exit_s:.2f} s after SIGTERM (grace {GRACE_S:g} s)")
