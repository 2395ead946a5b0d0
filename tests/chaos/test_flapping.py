"""T11 (reliability.md), scaled for CI: a flapping network between the workers and Redis.

Four worker processes (two slots each) reach Redis through one FaultProxy that adds latency to every
chunk and resets every connection every RESET_EVERY_S for FLAP_S, while ~300 short jobs (each with
progress writes) are submitted across that window. What must hold: nothing lost, nothing committed
twice, every job terminal within the deadline, no unhandled exception in any worker, progress
monotonic within each attempt, and workers back at work soon after each reset.
"""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest

from emp.bench.fault_proxy import FaultProxy
from emp.model.events import Event, EventType
from tests.chaos.harness import ChaosRun, sim_wire
from tests.polling import wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(150)]

WORKERS = 4
SLOTS = 2
JOBS = 300
BATCHES = 20
FLAP_S = 20.0
RESET_EVERY_S = 2.0
LATENCY_S = 0.03
LEASE_S = 5.0
RECOVERY_S = 2.0
"""After a reset, each worker process writes its next job event within this (while work is queued)."""


def _progress_regressions(events: list[Event]) -> list[str]:
    """(job, attempt) whose job_progress values go backwards in stream order."""
    last: dict[tuple[str, int | None], float] = {}
    bad: list[str] = []
    for e in events:
        if e.type != EventType.JOB_PROGRESS or e.job is None:
            continue
        value = float(e.data.get("progress", 0))
        key = (e.job, e.attempt)
        if value < last.get(key, 0.0):
            bad.append(f"{e.job}#{e.attempt}: {last[key]} -> {value}")
        last[key] = max(value, last.get(key, 0.0))
    return bad


def _recovery_gaps_ms(events: list[Event], resets_ms: list[float]) -> list[float]:
    """Per reset and worker process: ms until that process wrote its next job event (its slots are
    ``f<i>-<n>``): how long it took to reconnect and get back to work."""
    gaps: list[float] = []
    for reset in resets_ms:
        for i in range(WORKERS):
            prefix = f"f{i}-"
            after = [e.ts for e in events if e.ts is not None and e.ts >= reset and (e.worker or "").startswith(prefix)]
            gaps.append(min(after) - reset if after else float("inf"))
    return gaps


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


async def test_a_flapping_network_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    async with ChaosRun(tmp_path, lease_ms=LEASE_S * 1000) as run:
        assert run.recorder is not None and run.workers is not None
        recorder = run.recorder
        with FaultProxy(run.redis.port) as proxy:
            procs = [
                run.start_worker(
                    "--id", f"f{i}", "--concurrency", str(SLOTS), "--lease-ttl", str(LEASE_S), redis_url=proxy.url()
                )
                for i in range(WORKERS)
            ]
            calls = run.calls
            assert calls is not None

            async def all_registered() -> bool:
                return len(await calls.live_workers()) == WORKERS * SLOTS

            await wait_for(all_registered, timeout=60, what="every worker to register")
            proxy.latency_s = LATENCY_S
            resets: list[float] = []  # wall-clock ms of each reset (events carry Redis's, same host)
            per_batch = JOBS // BATCHES

            async def flap() -> None:
                started = time.monotonic()
                while time.monotonic() - started < FLAP_S:
                    await anyio.sleep(RESET_EVERY_S)
                    await anyio.to_thread.run_sync(proxy.reset_all)
                    resets.append(time.time() * 1000)

            async with anyio.create_task_group() as tg:
                busy_until_ms = 0.0
                tg.start_soon(flap)
                for b in range(BATCHES):
                    await run.submit([sim_wire(f"j{b}-{k}", steps=6, step_ms=60) for k in range(per_batch)])
                    await anyio.sleep(FLAP_S * 0.8 / BATCHES)  # spread the load across the flapping window
                busy_until_ms = time.time() * 1000  # work was queued for every worker until about now
            proxy.latency_s = 0.0
            verdict = await run.finish(timeout=60)
            alive = [p.poll() is None for p in procs]
        logs = run.worker_logs()
        assert verdict.ok, verdict.summary() + logs
        assert verdict.outcomes == {"completed": JOBS}, verdict.summary() + logs
        assert all(alive), f"a worker died: {alive}\n{logs}"
        for i in range(WORKERS):
            assert "Traceback" not in run.workers.log(i), run.workers.log(i)[-5000:]

    events = recorder.events
    assert len(resets) >= FLAP_S / RESET_EVERY_S - 1, resets
    gaps = _recovery_gaps_ms(events, [r for r in resets if r < busy_until_ms - RECOVERY_S * 1000])
    assert gaps and _p99(gaps) <= RECOVERY_S * 1000, sorted(gaps)[-10:]
    assert not _progress_regressions(events), _progress_regressions(events)[:5]
    assert sum(1 for e in events if e.type == EventType.JOB_PROGRESS) >= JOBS, "the jobs wrote progress"
