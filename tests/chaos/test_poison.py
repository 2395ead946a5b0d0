"""T4 (reliability.md): a poison job that kills every worker it lands on is stopped after max_lost_leases.

One job's payload SIGKILLs the worker process that runs it (``fail: crash``, as an OOM kill would),
on every attempt; 60 normal jobs run beside it on 3 workers that a small supervisor restarts when
they die (as systemd or a container runtime would). The poison job must end ``failed`` with
``worker_lost`` after exactly ``max_lost_leases`` (3) lost leases, which is exactly 3 dead workers;
every normal job completes; the checker is clean.
"""

from __future__ import annotations

import itertools
import subprocess
from pathlib import Path

import anyio
import pytest

from emp import defaults
from emp.model.events import EventType
from emp.model.history import parse_executions
from emp.model.job import JobStatus
from tests.chaos.harness import ChaosRun, sim_wire

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

WORKERS = 3
NORMAL_JOBS = 60
LEASE_S = 1.0


class Supervisor:
    """Keeps WORKERS worker processes alive: a dead one is replaced (under a new id) at once."""

    def __init__(self, run: ChaosRun) -> None:
        self.run = run
        self.ids = itertools.count()
        self.live: list[subprocess.Popen[bytes]] = []
        self.deaths: list[int] = []
        """Exit codes of the workers that died."""

    def start(self) -> None:
        self.live.append(self.run.start_worker("--id", f"w{next(self.ids)}", "--lease-ttl", str(LEASE_S)))

    async def keep_alive(self, stop: anyio.Event) -> None:
        for _ in range(WORKERS):
            self.start()
        while not stop.is_set():
            for proc in [p for p in self.live if p.poll() is not None]:
                self.live.remove(proc)
                self.deaths.append(proc.returncode)
                self.start()
            with anyio.move_on_after(0.1):  # a supervisor's poll period, not a wait for state
                await stop.wait()


async def test_a_job_that_kills_its_worker_fails_worker_lost_after_exactly_max_lost_leases(tmp_path: Path) -> None:
    max_lost = defaults.MAX_LOST_LEASES
    async with ChaosRun(tmp_path, lease_ms=LEASE_S * 1000) as run:
        assert run.calls is not None and run.recorder is not None
        supervisor = Supervisor(run)
        stop = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(supervisor.keep_alive, stop)
            normal = [sim_wire(f"n{i:02d}", steps=2, step_ms=50) for i in range(NORMAL_JOBS)]
            poison = sim_wire("poison", steps=4, step_ms=50, payload={"fail": "crash"}, max_attempts=10)
            # The poison among the first jobs, so it strikes while the normal ones are being worked.
            await run.submit(normal[:5] + [poison] + normal[5:])
            verdict = await run.finish(timeout=90)
            stop.set()
        logs = run.worker_logs()
        assert verdict.ok, verdict.summary() + logs
        assert verdict.outcomes == {"completed": NORMAL_JOBS, "failed": 1}, verdict.summary() + logs

        job = await run.calls.get_job("poison", events=0)
        assert job is not None and job.status == JobStatus.FAILED, job
        assert job.failure_class == "worker_lost" and job.lost == max_lost and job.attempt == max_lost, job
        # max_attempts is 10: the lost-lease limit stopped it, not the attempt limit.
        assert job.tries == 0, job

        poison_events = [e for e in run.recorder.events if e.job == "poison"]
        lost = [e.attempt for e in poison_events if e.type == EventType.JOB_REQUEUED]
        failed = [(e.attempt, e.data.get("failure_class")) for e in poison_events if e.type == EventType.JOB_FAILED]
        assert lost == list(range(1, max_lost)) and failed == [(max_lost, "worker_lost")], poison_events

        # Exactly max_lost workers died, each running the poison (never finishing it), and no one else died.
        runs = [x for x in parse_executions(run.exec_log.read_text().splitlines()) if x.job == "poison"]
        assert sorted(x.attempt for x in runs) == list(range(1, max_lost + 1)), runs
        assert all(x.end_ms is None for x in runs), runs
        assert supervisor.deaths == [-9] * max_lost, supervisor.deaths
        assert len({x.runner for x in runs}) == max_lost

        # The normal jobs were unaffected: each ran once, no lost lease, no retry.
        for i in range(NORMAL_JOBS):
            n = await run.calls.get_job(f"n{i:02d}", events=0)
            assert n is not None and n.status == JobStatus.COMPLETED and n.attempt == 1 and n.lost == 0, n
