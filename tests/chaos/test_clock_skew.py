"""T12 (reliability.md): worker clocks an hour ahead and ten minutes behind change nothing (G6).

Workers run under libfaketime (``FAKETIME=+1h`` / ``-10m`` in the ``faketime`` tool's LD_PRELOAD,
with the monotonic clock left alone, as a host whose wall clock is simply wrong); Redis runs on the
true clock. Leases are server-side deadlines (Redis TIME), so:

- no premature expiry: long jobs (longer than the lease) on both skewed workers are never requeued;
- no missed expiry: when a skewed worker is SIGKILLed mid-job, the other (idle, skewed the other way)
  reclaims the job within the G3 bound (lease + sweep + 1 s), in both directions;
- an idle skewed worker waits for the server's deadlines as the server counts them: it neither
  polls Redis without pause (a deadline an hour "in the past") nor sleeps through one (ten minutes
  "in the future");
- every timestamp stored in job records and events lies within the true clock's window of the run.

Workers idle-poll at the product default here (not the harness's 0.5 s), so only the wake-up at a
lease's expiry can explain a prompt reclaim.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import anyio
import pytest

from emp import defaults
from emp.model.events import EventType
from emp.model.job import JobStatus
from emp.redis.calls import Calls
from tests.chaos.harness import ChaosRun, sim_wire
from tests.polling import wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

LEASE_S = 2.0
SWEEP_S = 0.5
"""The idle survivor's own sweep: it claims (and so requeues expired leases) when the lease falls due;
this is the slack for that wake-up and the claim on a loaded machine."""
RECLAIM_BOUND_S = LEASE_S + SWEEP_S + 1
IDLE_FCALLS_PER_S = 40
"""Two workers (one running a job: heartbeats and progress; one idle) make a few calls a second; a
worker polling Redis without pause makes hundreds."""
SKEWS = {"ahead": "+1h", "behind": "-10m"}


def faketime_preload() -> str | None:
    """The LD_PRELOAD value the ``faketime`` tool sets (its own way of finding libfaketime), or None."""
    tool = shutil.which("faketime")
    if tool is None:
        return None
    out = subprocess.run([tool, "-f", "+0", "sh", "-c", 'printf %s "$LD_PRELOAD"'], capture_output=True, text=True)
    return out.stdout.strip() or None


PRELOAD = faketime_preload()
if PRELOAD is None and os.environ.get("CI") != "true":
    pytest.skip(
        "faketime is not installed (Debian package faketime; scripts/ensure-test-tools installs it)",
        allow_module_level=True,
    )


def skewed_env(skew: str) -> dict[str, str]:
    assert PRELOAD is not None, "faketime is required in CI: scripts/ensure-test-tools installs it"
    return {
        "LD_PRELOAD": PRELOAD,
        "FAKETIME": skew,
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        "EMP_IDLE_POLL_S": str(defaults.IDLE_POLL_S),
    }


async def _fcalls(calls: Calls) -> int:
    stats = await calls.client.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("fcall", "fcall_ro"))


class SkewedFleet:
    """One worker per skew (concurrency 1), replaced under a new id when the test kills it."""

    def __init__(self, run: ChaosRun) -> None:
        assert run.calls is not None and run.recorder is not None
        self.run, self.calls, self.recorder = run, run.calls, run.recorder
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.ids: dict[str, str] = {}
        """Skew name -> the id of its live worker."""
        self.reclaims: list[tuple[str, str, float]] = []
        """(victim's skew, survivor's skew, seconds from the kill to the survivor's attempt)."""
        self.idle_rates: dict[str, float] = {}
        """Survivor's skew -> Function calls a second while it idled beside the victim's lease."""

    def start(self, skew: str) -> None:
        self.ids[skew] = f"{skew}{len(self.procs) + len(self.reclaims)}"
        self.procs[skew] = self.run.start_worker(
            "--id", self.ids[skew], "--lease-ttl", str(LEASE_S), env=skewed_env(SKEWS[skew])
        )

    async def registered(self, skew: str) -> None:
        worker_id = self.ids[skew]

        async def seen() -> bool:
            return any(e.type == EventType.WORKER_REGISTERED and e.worker == worker_id for e in self.recorder.events)

        await wait_for(seen, timeout=30, what=f"{worker_id} to register")

    async def job_on(self, job_id: str, attempt: int, status: JobStatus) -> str:
        """Wait until ``job_id``'s ``attempt`` is in ``status`` (with progress when running); its worker."""

        async def there() -> str | None:
            job = await self.calls.get_job(job_id, events=0)
            if job is None or job.attempt != attempt or job.status != status or not job.worker_id:
                return None
            return job.worker_id if status != JobStatus.IN_PROGRESS or job.progress else None

        worker_id: str = await wait_for(there, timeout=30, what=f"{job_id} attempt {attempt} {status}")
        return worker_id

    async def kill_the_holder_and_time_the_reclaim(self, job_id: str, attempt: int) -> None:
        holder = await self.job_on(job_id, attempt, JobStatus.IN_PROGRESS)
        victim = next(skew for skew, w in self.ids.items() if w == holder)
        survivor = next(skew for skew in SKEWS if skew != victim)
        await self.registered(survivor)
        # A no-op job only the idle survivor can take: its complete-and-claim-next comes back empty,
        # with the victim's lease as the next deadline, so from here on it waits for that deadline.
        tick = f"tick{attempt}"
        await self.run.submit([sim_wire(tick, steps=0)])
        assert await self.job_on(tick, 1, JobStatus.COMPLETED) == self.ids[survivor]

        before, t0 = await _fcalls(self.calls), time.monotonic()
        await anyio.sleep(1.5)  # the measuring window (no state awaited)
        self.idle_rates[survivor] = (await _fcalls(self.calls) - before) / (time.monotonic() - t0)

        self.procs[victim].send_signal(signal.SIGKILL)
        self.procs[victim].wait(timeout=10)
        killed = time.monotonic()
        assert await self.job_on(job_id, attempt + 1, JobStatus.IN_PROGRESS) == self.ids[survivor]
        self.reclaims.append((victim, survivor, time.monotonic() - killed))

    def figures(self) -> str:
        reclaims = ", ".join(f"{s} took {v}'s job {t:.2f} s after the kill" for v, s, t in self.reclaims)
        rates = ", ".join(f"{s} {r:.1f}/s" for s, r in self.idle_rates.items())
        return f"reclaims: {reclaims}; Function calls while idle: {rates}"


async def test_skewed_worker_clocks_neither_expire_leases_early_nor_miss_an_expiry(tmp_path: Path) -> None:
    async with ChaosRun(tmp_path, lease_ms=LEASE_S * 1000) as run:
        assert run.calls is not None and run.recorder is not None
        calls = run.calls
        real_start_ms = time.time() * 1000
        fleet = SkewedFleet(run)
        for skew in SKEWS:
            fleet.start(skew)
        for skew in SKEWS:
            await fleet.registered(skew)

        # No premature expiry: jobs of 1.5 leases each, two rounds on both workers.
        healthy = [f"h{i}" for i in range(4)]
        await run.submit([sim_wire(j, steps=30, step_ms=100) for j in healthy])
        ran_on = {await fleet.job_on(j, 1, JobStatus.COMPLETED) for j in healthy}
        assert ran_on == set(fleet.ids.values()), f"both skewed workers ran jobs: {ran_on}"

        # No missed expiry, both ways: the holder of v is killed and the other skew's idle worker
        # reclaims it; then a fresh worker with the victim's skew is the survivor of the next kill.
        await run.submit([sim_wire("v", steps=100, step_ms=100)])
        await fleet.kill_the_holder_and_time_the_reclaim("v", 1)
        fleet.start(fleet.reclaims[0][0])
        await fleet.kill_the_holder_and_time_the_reclaim("v", 2)
        figures = fleet.figures()
        print(figures)

        verdict = await run.finish(timeout=60)
        real_end_ms = time.time() * 1000
        logs = run.worker_logs()
        assert verdict.ok, verdict.summary() + logs
        assert verdict.outcomes == {"completed": 7}, verdict.summary()
        assert {victim for victim, _, _ in fleet.reclaims} == set(SKEWS), figures
        assert all(took <= RECLAIM_BOUND_S for _, _, took in fleet.reclaims), f"{figures}\n{logs}"
        assert all(rate < IDLE_FCALLS_PER_S for rate in fleet.idle_rates.values()), f"{figures}\n{logs}"

        # Only the two killed attempts were requeued: no healthy job, no other attempt of v.
        requeued = [(e.job, e.attempt) for e in run.recorder.events if e.type == EventType.JOB_REQUEUED]
        assert requeued == [("v", 1), ("v", 2)], requeued
        v = await calls.get_job("v", events=0)
        assert v is not None and v.attempt == 3 and v.lost == 2, v

        # Every stored time is Redis's: within the true clock's window (an hour ahead or ten minutes
        # behind would be far outside it).
        window = (real_start_ms - 1000, real_end_ms + 1000)
        for job_id in run.accepted:
            job = await calls.get_job(job_id, events=0)
            assert job is not None
            stamps = {"created_at": job.created_at, "started_at": job.started_at, "finished_at": job.finished_at}
            for i, entry in enumerate(job.history):
                stamps |= {f"history[{i}].{k}": entry.get(k) for k in ("started_at", "ended_at")}
            for name, ms in stamps.items():
                assert ms is not None and window[0] <= float(ms) <= window[1], f"{job_id}.{name} = {ms}, {window}"
        for e in run.recorder.events:
            assert e.ts is not None and window[0] <= e.ts <= window[1], f"event {e} outside {window}"
