"""The worker runtime against a real Redis: in-process for behaviour, subprocesses for signals."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import anyio
import pytest

from emp.model.events import EventType
from emp.model.job import Job, JobStatus
from emp.model.retry import FailureClass
from emp.redis import library
from emp.redis.calls import Calls, OutcomeCode
from emp.redis.client import connect
from emp.worker.runtime import Worker, WorkerConfig
from tests.integration.helpers import WorkerProcs, wait_for, wire
from tests.redis_proc import RedisProc

pytestmark = pytest.mark.anyio


def cfg(redis_url: str, namespace: str, **kw: Any) -> WorkerConfig:
    base: dict[str, Any] = {
        "redis_url": redis_url,
        "namespace": namespace,
        "worker_id": "w-" + namespace[-6:],
        "burst": True,
        "progress_min_interval_s": 0.05,
        "maintenance_interval_s": 3600,
    }
    base.update(kw)
    return WorkerConfig(**base)


async def job(calls: Calls, job_id: str) -> Job:
    data = await calls.get_job(job_id)
    assert data is not None, f"job {job_id} missing"
    return data


async def status_of(calls: Calls, job_id: str) -> str:
    return str((await job(calls, job_id)).status)


async def test_burst_worker_runs_every_job_and_exits(calls: Calls, redis_url: str, namespace: str) -> None:
    await calls.submit([wire(payload={"steps": 0}, id=f"j{i}") for i in range(50)], 1 << 20)
    with anyio.fail_after(30):
        code = await Worker(cfg(redis_url, namespace, concurrency=4)).run()
    assert code == 0
    rows, _ = await calls.list_jobs("completed", limit=100)
    assert sorted(r["id"] for r in rows) == sorted(f"j{i}" for i in range(50))


async def test_slots_completing_together_lose_nothing_and_complete_each_job_once(
    calls: Calls, redis_url: str, namespace: str
) -> None:
    n = 200
    jobs = [wire(payload={"steps": 0, "result": {"i": i}}, id=f"g{i}") for i in range(n)]
    await calls.submit(jobs, 1 << 20)
    worker = Worker(cfg(redis_url, namespace, concurrency=8))
    with anyio.fail_after(60):
        assert await worker.run() == 0
    assert worker.commits.entries == n  # every complete went through the group commit
    completed = [f for _, f in await calls.client.xrange(calls.keys.events) if f["type"] == "job_completed"]
    assert sorted(f["job"] for f in completed) == sorted(f"g{i}" for i in range(n))  # each once
    assert {f["attempt"] for f in completed} == {"1"}
    for i in (0, n // 2, n - 1):
        data = await job(calls, f"g{i}")
        assert data.status == JobStatus.COMPLETED and data.result == {"i": i}
    per_slot = [int(await calls.client.hget(calls.keys.worker(s.worker_id), "completed") or 0) for s in worker.slots]
    assert sum(per_slot) == n


async def test_progress_is_monotonic_and_ends_at_100_before_completion(
    calls: Calls, redis_url: str, namespace: str
) -> None:
    await calls.submit([wire(payload={"steps": 8, "step_ms": 20, "result": {"x": 1}}, id="p")], 1 << 20)
    with anyio.fail_after(30):
        await Worker(cfg(redis_url, namespace)).run()
    data = await job(calls, "p")
    assert data.status == JobStatus.COMPLETED
    assert data.result == {"x": 1}
    types = [e.type for e in data.events]
    progress = [e.data["progress"] for e in data.events if e.type == EventType.JOB_PROGRESS]
    assert progress == sorted(progress) and progress[-1] == 100
    assert types[-1] == "job_completed"
    assert types.index("job_completed") > max(i for i, t in enumerate(types) if t == "job_progress")


async def test_transient_failure_retries_then_completes(calls: Calls, redis_url: str, namespace: str) -> None:
    await calls.submit(
        [wire(payload={"steps": 1, "step_ms": 1, "fail": "transient", "fail_attempts": 1}, id="t")], 1 << 20
    )
    with anyio.fail_after(30):
        await Worker(cfg(redis_url, namespace)).run()
    data = await job(calls, "t")
    assert data.status == JobStatus.COMPLETED
    assert data.attempt == 2
    history = data.history
    assert history[0]["failure_class"] == "transient" and history[0]["outcome"] == "failed"


async def test_malformed_fails_once_and_timeout_fails_with_class_timeout(
    calls: Calls, redis_url: str, namespace: str
) -> None:
    await calls.submit(
        [
            wire(payload={"steps": 1, "step_ms": 1, "fail": "malformed"}, id="m"),
            wire(payload={"fail": "hang", "steps": 1, "step_ms": 1}, id="h", timeout_s=0.3, max_attempts=1),
        ],
        1 << 20,
    )
    with anyio.fail_after(30):
        await Worker(cfg(redis_url, namespace, concurrency=2)).run()
    m = await job(calls, "m")
    h = await job(calls, "h")
    assert (m.status, m.attempt, m.failure_class) == (JobStatus.FAILED, 1, FailureClass.MALFORMED)
    assert (h.status, h.failure_class) == (JobStatus.FAILED, FailureClass.TIMEOUT)


async def test_cancel_interrupts_a_running_job_and_the_worker_goes_on(
    calls: Calls, redis_url: str, namespace: str
) -> None:
    await calls.submit([wire(payload={"steps": 1000, "step_ms": 10}, id="long")], 1 << 20)
    worker = Worker(cfg(redis_url, namespace, burst=False))
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        await wait_for(lambda: _is(calls, "long", "in_progress"), what="job running")
        assert await calls.cancel("long", "user asked") == "in_progress"
        await wait_for(lambda: _slot_free(worker), timeout=5, what="worker to drop the job")
        # The worker still takes new work.
        await calls.submit([wire(payload={"steps": 0}, id="after")], 1 << 20)
        await wait_for(lambda: _is(calls, "after", "completed"), what="next job")
        worker.handle_signal(signal.SIGTERM)
    assert await status_of(calls, "long") == "cancelled"


async def test_idle_worker_is_woken_by_a_submission(calls: Calls, redis_url: str, namespace: str) -> None:
    """No busy polling: the idle poll is an hour, so only the wake-up can start the job."""
    worker = Worker(cfg(redis_url, namespace, burst=False, idle_poll_s=3600))
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        await wait_for(lambda: _idle(calls, worker.slots[0].worker_id), what="worker idle")
        await calls.submit([wire(payload={"steps": 0}, id="w1")], 1 << 20)
        await wait_for(lambda: _is(calls, "w1", "completed"), timeout=5, what="woken worker to run the job")
        worker.handle_signal(signal.SIGTERM)


async def test_stale_worker_cannot_complete_after_its_lease_was_requeued(
    calls: Calls, redis_url: str, namespace: str
) -> None:
    """A paused worker (lease lapsed, job requeued and done by another) is fenced out."""
    await calls.register_worker("a", "m", ["simulation"], {"services": ["simulation"]}, "ta", 60_000)
    await calls.register_worker("b", "m", ["simulation"], {"services": ["simulation"]}, "tb", 60_000)
    await calls.submit([wire(payload={"steps": 0}, id="z")], 1 << 20)
    first = await calls.claim("a", "r1", lease_ms=50)
    await wait_for(lambda: _maintained(calls), timeout=5, what="lease to expire and be requeued")
    second = await calls.claim("b", "r2", lease_ms=30_000)
    assert getattr(second, "id", None) == "z" and getattr(second, "attempt", 0) == 2
    await calls.complete("z", 2, "b", '"by b"')
    late = await calls.complete("z", getattr(first, "attempt", 1), "a", '"by a"')
    assert late.code == OutcomeCode.STALE
    data = await job(calls, "z")
    assert data.result == "by b"
    assert sum(1 for e in data.events if e.type == EventType.JOB_COMPLETED) == 1


# -- subprocesses and signals ----------------------------------------------------------------


async def test_sigkill_mid_job_requeues_after_the_lease_and_completes_on_attempt_2(
    calls: Calls, workers: WorkerProcs
) -> None:
    a = workers.start("--id", "victim", "--lease-ttl", "1")
    await calls.submit([wire(payload={"steps": 40, "step_ms": 50}, id="k")], 1 << 20)
    await wait_for(lambda: _is(calls, "k", "in_progress"), what="victim to start the job")
    a.send_signal(signal.SIGKILL)
    a.wait(timeout=10)
    workers.start("--id", "rescuer", "--lease-ttl", "5")
    await wait_for(lambda: _is(calls, "k", "completed"), timeout=30, what="job to complete elsewhere")
    f = await job(calls, "k")
    assert f.attempt == 2 and f.worker_id == "rescuer" and f.lost == 1
    assert f.history[0]["outcome"] == "lease_expired"


async def test_sigterm_drains_then_releases_and_exits_0(calls: Calls, workers: WorkerProcs) -> None:
    proc = workers.start("--id", "drainer", "--concurrency", "2", "--drain-timeout", "1")
    await calls.submit(
        [
            wire(payload={"steps": 5, "step_ms": 100}, id="short"),
            wire(payload={"steps": 100, "step_ms": 100}, id="long"),
        ],
        1 << 20,
    )
    await wait_for(lambda: _both_running(calls), what="both jobs running")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0, workers.log(0)
    short, long = await job(calls, "short"), await job(calls, "long")
    assert short.status == JobStatus.COMPLETED
    assert long.status == JobStatus.PENDING and long.tries == 0
    assert long.history[-1]["outcome"] == "released"


async def test_second_sigterm_releases_at_once_and_exits_1(calls: Calls, workers: WorkerProcs) -> None:
    proc = workers.start("--id", "impatient", "--drain-timeout", "60")
    await calls.submit([wire(payload={"steps": 200, "step_ms": 100}, id="slow")], 1 << 20)
    await wait_for(lambda: _is(calls, "slow", "in_progress"), what="job running")
    proc.send_signal(signal.SIGTERM)
    await wait_for(lambda: _log_has(workers, 0, "draining"), what="drain to begin")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 1, workers.log(0)
    assert await status_of(calls, "slow") == "pending"


async def test_redis_restarted_empty_workers_reload_functions_and_keep_working(tmp_path: Path, namespace: str) -> None:
    server = RedisProc(tmp_path / "redis").start()
    url = server.url
    procs = WorkerProcs(url, namespace, tmp_path)
    try:
        client = connect(url)
        await library.ensure_loaded(client)
        calls = Calls(client, namespace)
        worker = procs.start("--id", "survivor", env={"EMP_IDLE_POLL_S": "1"})
        await calls.submit([wire(payload={"steps": 0}, id="before")], 1 << 20)
        await wait_for(lambda: _is(calls, "before", "completed"), what="first job")
        server.restart()  # SIGKILL, then a server with no persistence: no functions, no keys
        await client.aclose()
        client = connect(url)
        calls = Calls(client, namespace)
        # The submitter's Calls reloads the library on "Function not found" by itself.
        await wait_for(lambda: _submit_ok(calls, "after"), timeout=15, what="submit after restart")
        await wait_for(lambda: _is(calls, "after", "completed"), timeout=20, what="worker to recover")
        assert worker.poll() is None, "worker crashed after the Redis restart"
        await client.aclose()
    finally:
        procs.kill_all()
        server.stop()


# -- helpers -----------------------------------------------------------------------------------


async def _is(calls: Calls, job_id: str, status: str) -> bool:
    data = await calls.get_job(job_id, events=0)
    return data is not None and data.status == status


async def _both_running(calls: Calls) -> bool:
    return await _is(calls, "short", "in_progress") and await _is(calls, "long", "in_progress")


async def _slot_free(worker: Worker) -> bool:
    return worker.slots[0].job is None or worker.slots[0].job.id != "long"


async def _idle(calls: Calls, worker_id: str) -> bool:
    return bool(await calls.client.zscore(calls.keys.idle("simulation"), worker_id))


async def _maintained(calls: Calls) -> bool:
    _, requeued, _ = await calls.maintain(100, 3)
    return requeued > 0


async def _log_has(workers: WorkerProcs, index: int, text: str) -> bool:
    return text in workers.log(index)


async def _submit_ok(calls: Calls, job_id: str) -> bool:
    try:
        await calls.submit([wire(payload={"steps": 0}, id=job_id)], 1 << 20)
    except Exception:
        return False
    return True


async def test_a_job_id_that_is_no_file_name_still_stores_its_outputs(
    calls: Calls, redis_url: str, namespace: str, tmp_path: Path
) -> None:
    """Client-chosen ids like ``cust:job/1`` are accepted at submit: the worker must run them
    (their outputs in a folder of their own), never crash on them."""
    from emp.worker.connectors.base import ConnectorBinding
    from emp.worker.connectors.simulation import SimulationConnector, SimulationSettings

    payload = {"workflow": {"1": {"class_type": "SaveImage", "inputs": {}}}, "steps": 1, "step_ms": 1}
    await calls.submit([wire("comfyui-sim", payload, id="cust:job/1"), wire("comfyui-sim", payload, id="..")], 1 << 20)
    binding = ConnectorBinding(SimulationConnector(SimulationSettings(imitate="comfyui")), ["comfyui-sim"])
    worker = Worker(cfg(redis_url, namespace, services=["comfyui-sim"], output_url=str(tmp_path)), bindings=[binding])
    with anyio.fail_after(30):
        assert await worker.run() == 0
    for job_id, folder in (("cust:job/1", "cust%3Ajob%2F1"), ("..", "%2E.")):
        done = await job(calls, job_id)
        assert done.status == JobStatus.COMPLETED, done
        [out] = done.result["outputs"]
        assert (tmp_path / folder / "1" / out["name"]).is_file()
