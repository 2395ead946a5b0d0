"""T20 (reliability.md): Redis at ``maxmemory`` (16 MB, ``noeviction``), submitted to until full.

What must hold: a submit is refused at once with the typed ``broker_full`` error (BrokerFull from
Python, exit code 3 and a clear line from `emp submit`, HTTP 507 with a JSON error from the
coordinator) and writes nothing (each submit is all or nothing); reads keep working (get, count,
list, snapshot); workers keep claiming and completing the jobs already accepted (the Functions that
finish admitted work are flagged ``allow-oom``), the checker clean; once ended jobs leave
(retention), memory frees and submits are accepted again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from emp.errors import BrokerFull
from emp.model.job import JobStatus
from emp.redis.calls import UpkeepCalls
from tests.chaos.harness import ChaosRun, sim_wire
from tests.coordinator_proc import CoordinatorProc
from tests.polling import wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

PAD = "x" * 100_000
"""100 KB of payload per job: 16 MB fills with ~150 jobs, which two workers run in seconds."""

FAST_S = 1.0
"""A refused submit answers at once (Redis refuses before running the Function), not by a timeout."""

ADMISSION = {"emp_submit", "emp_retry", "emp_schedule_add", "emp_schedule_fire"}
"""The Functions that admit new work: refused at maxmemory. Every other writing Function may run."""


def padded(job_id: str) -> dict[str, object]:
    return sim_wire(job_id, steps=1, step_ms=10, payload={"pad": PAD})


async def test_a_full_broker_refuses_new_work_at_once_and_finishes_the_rest(tmp_path: Path) -> None:
    redis_args = ["--maxmemory", "16mb", "--maxmemory-policy", "noeviction"]
    async with ChaosRun(tmp_path, redis_args=redis_args, lease_ms=5000) as run:
        assert run.calls is not None and run.client is not None
        coordinator = CoordinatorProc("coordinator", tmp_path, run.redis.url, run.namespace)
        try:
            api = await coordinator.serving()

            # -- fill it: batches of 10 until refused --------------------------------------------
            refused: list[str] = []
            for batch in range(1000):
                wires = [padded(f"b{batch:03d}-{i}") for i in range(10)]
                started = time.monotonic()
                try:
                    await run.submit(wires)
                except BrokerFull as exc:
                    took = time.monotonic() - started
                    assert took < FAST_S, f"the refusal took {took:.2f} s"
                    assert "broker_full" in str(exc)
                    refused = [str(w["id"]) for w in wires]
                    break
            assert refused, "16 MB never filled"
            assert len(run.accepted) >= 50, len(run.accepted)
            # All or nothing: no job of the refused batch exists.
            assert [await run.calls.get_job(j, events=0) for j in refused] == [None] * len(refused)

            # -- reads keep working -----------------------------------------------------------------
            job = await run.calls.get_job(run.accepted[0], events=0)
            assert job is not None and job.status == JobStatus.PENDING
            counts = await run.calls.count_jobs()
            assert counts.get("pending") == len(run.accepted), counts
            rows, _ = await run.calls.list_jobs("pending", limit=5)
            assert len(rows) == 5
            snap = await run.calls.snapshot(max_active=0, max_workers=0, max_recent=0)
            assert sum(q.pending for q in snap.services.values()) == len(run.accepted)

            # -- every way in is refused with a typed, clear error -----------------------------------
            cli = subprocess.run(
                [sys.executable, "-m", "emp", "--redis-url", run.redis.url, "--namespace", run.namespace]
                + ["submit", "simulation", "--payload", json.dumps({"steps": 1, "pad": PAD})],
                capture_output=True,
                text=True,
                timeout=60,
                env={k: v for k, v in os.environ.items() if not k.startswith("EMP_")},
            )
            assert cli.returncode == 3 and "broker_full" in cli.stderr and "maxmemory" in cli.stderr, cli
            assert cli.stdout == ""  # no id printed: nothing was submitted
            async with httpx.AsyncClient(timeout=30) as http:
                resp = await http.post(
                    f"{api}/api/jobs", json={"service": "simulation", "payload": {"steps": 1, "pad": PAD}}
                )
                assert resp.status_code == 507, resp.text
                assert resp.json()["error"]["code"] == "broker_full", resp.text
                health = await http.get(f"{api}/health")
                assert health.status_code == 200 and health.json()["redis"] == "ok", health.text
            assert (await run.calls.count_jobs()).get("pending") == len(run.accepted)

            # -- the jobs already accepted all run to the end -------------------------------------------
            run.start_worker("--id", "a", "--concurrency", "2", "--lease-ttl", "5")
            run.start_worker("--id", "b", "--concurrency", "2", "--lease-ttl", "5")
            verdict = await run.finish(timeout=90)
            assert verdict.ok, verdict.summary() + run.worker_logs()
            assert verdict.outcomes == {"completed": len(run.accepted)}, verdict.summary()
            with pytest.raises(BrokerFull):  # still full: completing is no reason to admit more
                await run.submit([padded("still-full")])

            # -- ended jobs leave (a retention of 1 ms here), memory frees, submits are welcome again ----
            sweeper = UpkeepCalls(run.calls, retention_ms=1)

            async def cleaned() -> bool:
                await sweeper.cleanup(100)
                return (await run.calls.count_jobs()).get("completed", 0) == 0

            await wait_for(cleaned, timeout=30, what="the ended jobs to be cleaned up")
            await run.submit([padded("welcome-again")])
            assert await run.calls.get_job("welcome-again", events=0) is not None
        finally:
            coordinator.stop()


async def test_only_the_functions_that_admit_work_are_refused_at_maxmemory(redis_url: str) -> None:
    """The allow-oom policy (emp/redis/library.py), read back from the server: every Function that
    may write carries ``allow-oom`` except those that admit new work."""
    from emp.redis import library
    from emp.redis.client import connect

    client = connect(redis_url)
    try:
        await library.ensure_loaded(client)
        raw = await client.execute_command("FUNCTION", "LIST", "LIBRARYNAME", "emp")
        functions = _functions(raw)
        writers = {name for name, flags in functions.items() if "no-writes" not in flags}
        refused = {name for name in writers if "allow-oom" not in functions[name]}
        assert refused == ADMISSION, refused
    finally:
        await client.aclose()


def _functions(raw: object) -> dict[str, set[str]]:
    """FUNCTION LIST's reply (as redis-py parses it) as {function name: flags}."""
    [lib] = raw  # type: ignore[misc]
    return {str(fn["name"]): {str(x) for x in fn["flags"]} for fn in lib["functions"]}
