"""T5 and T6 (reliability.md): a reply lost on its way back to the worker, on a claim and on a complete.

The worker reaches Redis through a FaultProxy. To lose exactly the reply of the call under test,
the proxy adds latency (each reply waits LATENCY_S inside the proxy); the test watches the job's
record on its own direct connection and, the moment the call has taken effect in Redis, switches the
proxy to ``drop_replies``: that call's reply, still inside the proxy, is thrown away. The worker's
reply timeout (EMP_REDIS_TIMEOUT_S) then fires, and its retries cannot get through either (a new
connection's handshake replies are dropped too) until the proxy passes again.

What must hold: the retried call is idempotent. A claim retried with its request id gets the same
job back (no job is left active under a live worker that does not know it); a complete retried after
it went through answers ALREADY (one completion, one job_completed event, the attempt unchanged).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from emp.bench.fault_proxy import FaultProxy
from emp.model.events import EventType
from emp.model.job import Job, JobStatus
from tests.chaos.harness import ChaosRun, sim_wire
from tests.polling import wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]

LATENCY_S = 0.15
"""Per chunk, each way: the window in which the test sees a call's effect before its reply is out."""
REPLY_TIMEOUT_S = "1.0"
"""The worker's reply timeout: above a round trip through the proxy (2 x LATENCY_S) on a loaded box."""
LEASE_S = 6.0
"""Long enough that the job's lease cannot lapse while its claim reply is being retried (a few s):
the claim must come back by idempotency, not by the orphan being swept and claimed again."""


def _job_check(run: ChaosRun, job_id: str, test: Callable[[Job], bool]) -> Callable[[], Awaitable[Job | None]]:
    calls = run.calls
    assert calls is not None

    async def check() -> Job | None:
        job = await calls.get_job(job_id, events=0)
        return job if job is not None and test(job) else None

    return check


def _log_says(run: ChaosRun, text: str, index: int = 0) -> Callable[[], Awaitable[bool]]:
    assert run.workers is not None
    workers = run.workers

    async def check() -> bool:
        return text in workers.log(index)

    return check


def _events(run: ChaosRun, job_id: str, kind: EventType) -> list[int | None]:
    """The attempts of ``job_id``'s events of type ``kind``, in stream order."""
    assert run.recorder is not None
    return [e.attempt for e in run.recorder.events if e.job == job_id and e.type == kind]


async def _start_worker_behind(run: ChaosRun, proxy: FaultProxy, worker_id: str) -> int:
    """A worker reaching Redis through ``proxy``; returns its pid once it is registered."""
    assert run.calls is not None
    calls = run.calls
    proc = run.start_worker(
        "--id",
        worker_id,
        "--lease-ttl",
        str(LEASE_S),
        env={"EMP_REDIS_TIMEOUT_S": REPLY_TIMEOUT_S},
        redis_url=proxy.url(),
    )

    async def registered() -> bool:
        return any(w.id == worker_id for w in await calls.live_workers())

    await wait_for(registered, timeout=30, what=f"worker {worker_id} to register")
    return proc.pid


async def test_a_claim_whose_reply_is_lost_is_retried_with_its_request_id_and_gets_the_same_job(
    tmp_path: Path,
) -> None:
    async with ChaosRun(tmp_path, lease_ms=LEASE_S * 1000) as run:
        assert run.calls is not None
        with FaultProxy(run.redis.port) as proxy:
            pid = await _start_worker_behind(run, proxy, "w")
            proxy.latency_s = LATENCY_S
            await run.submit([sim_wire("j0", steps=4, step_ms=50)])

            # The claim took j0 in Redis: its reply is still in the proxy. Lose it.
            await wait_for(_job_check(run, "j0", lambda j: j.worker_id == "w"), timeout=30, what="w's claim of j0")
            proxy.set_mode("drop_replies")
            await wait_for(_log_says(run, "claim: redis unavailable"), timeout=20, what="the claim to time out")
            job = await run.calls.get_job("j0", events=0)
            assert job is not None and job.status == JobStatus.IN_PROGRESS and job.attempt == 1
            proxy.set_mode("pass")
            proxy.latency_s = 0.0

            verdict = await run.finish(timeout=40)
        logs = run.worker_logs()
        assert verdict.ok, verdict.summary() + logs
        assert verdict.outcomes == {"completed": 1}, verdict.summary() + logs
        job = await run.calls.get_job("j0", events=0)
        assert job is not None and job.attempt == 1 and job.lost == 0 and job.worker_id == "w", logs

    # The retried claim got the same job back: one attempt, started once, run once by w, never swept.
    assert _events(run, "j0", EventType.JOB_STARTED) == [1], logs
    assert _events(run, "j0", EventType.JOB_REQUEUED) == [], logs
    assert _events(run, "j0", EventType.JOB_COMPLETED) == [1], logs
    assert _starts(run) == [("j0", 1, str(pid))], logs


def _starts(run: ChaosRun) -> list[tuple[str, int, str]]:
    """(job, attempt, runner pid) of every execution the simulation service saw begin."""
    lines = run.exec_log.read_text().splitlines() if run.exec_log.exists() else []
    runs = [json.loads(line) for line in lines]
    return [(r["job"], r["attempt"], r["runner"]) for r in runs if r["phase"] == "start"]


async def test_a_complete_whose_reply_is_lost_is_retried_and_answers_already(tmp_path: Path) -> None:
    async with ChaosRun(tmp_path, lease_ms=LEASE_S * 1000) as run:
        assert run.calls is not None
        with FaultProxy(run.redis.port) as proxy:
            pid = await _start_worker_behind(run, proxy, "w")
            proxy.latency_s = LATENCY_S
            await run.submit([sim_wire("j0", steps=6, step_ms=50, payload={"result": {"answer": 42}})])
            await wait_for(_job_check(run, "j0", lambda j: j.worker_id == "w"), timeout=30, what="w's claim of j0")
            # j1 waits in the queue: the complete of j0 claims it in the same call (its reply is lost too).
            await run.submit([sim_wire("j1", steps=2, step_ms=50)])

            # The complete went through in Redis: its reply is still in the proxy. Lose it.
            done = _job_check(run, "j0", lambda j: j.status == JobStatus.COMPLETED)
            await wait_for(done, timeout=30, what="j0's complete")
            proxy.set_mode("drop_replies")
            await wait_for(_log_says(run, "complete: redis unavailable"), timeout=20, what="the complete to time out")
            proxy.set_mode("pass")
            proxy.latency_s = 0.0
            # The job is already completed in Redis: wait for the retried complete's answer before the run ends.
            retried = _log_says(run, "job j0 attempt 1: already completed")
            await wait_for(retried, timeout=20, what="the retried complete")

            verdict = await run.finish(timeout=40)
        logs = run.worker_logs()
        assert verdict.ok, verdict.summary() + logs
        assert verdict.outcomes == {"completed": 2}, verdict.summary() + logs
        j0 = await run.calls.get_job("j0", events=0)
        j1 = await run.calls.get_job("j1", events=0)
        assert j0 is not None and j1 is not None
        # Completed once, with its own result, the attempt counter unchanged by the retried call.
        assert j0.attempt == 1 and j0.lost == 0 and j0.result == {"answer": 42}, logs
        assert j1.attempt == 1 and j1.lost == 0 and j1.worker_id == "w", logs

    assert "job j0 attempt 1: already completed" in logs, "the retried complete answered ALREADY"
    assert _events(run, "j0", EventType.JOB_COMPLETED) == [1], logs
    # The claim made in the same call was retried with its request id too: j1 came back, started once.
    assert _events(run, "j1", EventType.JOB_STARTED) == [1], logs
    assert [e for e in _all_job_events(run) if e == EventType.JOB_REQUEUED] == [], logs
    assert _starts(run) == [("j0", 1, str(pid)), ("j1", 1, str(pid))], logs


async def test_a_fail_whose_reply_is_lost_is_retried_and_fails_the_job_once(tmp_path: Path) -> None:
    async with ChaosRun(tmp_path, lease_ms=LEASE_S * 1000) as run:
        assert run.calls is not None
        with FaultProxy(run.redis.port) as proxy:
            await _start_worker_behind(run, proxy, "w")
            proxy.latency_s = LATENCY_S
            await run.submit([sim_wire("bad", steps=2, step_ms=50, payload={"fail": "malformed"})])

            done = _job_check(run, "bad", lambda j: j.status == JobStatus.FAILED)
            await wait_for(done, timeout=30, what="the fail of the malformed job")
            proxy.set_mode("drop_replies")
            await wait_for(_log_says(run, "fail: redis unavailable"), timeout=20, what="the fail call to time out")
            proxy.set_mode("pass")
            proxy.latency_s = 0.0
            # The job already failed in Redis: wait for the worker's retry to be answered before the run ends.
            await wait_for(_log_says(run, "job bad attempt 1: STALE failed"), timeout=20, what="the retried fail")

            verdict = await run.finish(timeout=40)
        logs = run.worker_logs()
        assert verdict.ok, verdict.summary() + logs
        assert verdict.outcomes == {"failed": 1}, verdict.summary() + logs
        job = await run.calls.get_job("bad", events=0)
        assert job is not None and job.attempt == 1 and job.failure_class == "malformed", logs

    # The retry found the attempt already ended: refused (STALE), nothing written twice.
    assert "job bad attempt 1: STALE failed" in logs, logs
    assert _events(run, "bad", EventType.JOB_FAILED) == [1], logs


def _all_job_events(run: ChaosRun) -> list[str]:
    assert run.recorder is not None
    return [str(e.type) for e in run.recorder.events if e.job is not None]
