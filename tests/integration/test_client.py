"""emp.client against a real Redis and an in-process worker: the public Python API and the README example."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from emp.client import (
    Client,
    EventType,
    Job,
    JobNotFound,
    JobStatus,
    JobUpdate,
    JobValidationError,
    NotRetryable,
    SyncClient,
    WaitTimeout,
)
from emp.redis.calls import Calls
from emp.worker.runtime import Worker, WorkerConfig

pytestmark = pytest.mark.anyio

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture
async def client(redis_url: str, namespace: str) -> AsyncIterator[Client]:
    async with Client(redis_url, namespace) as c:
        yield c


def worker(redis_url: str, namespace: str, **kw: Any) -> Worker:
    base: dict[str, Any] = {
        "redis_url": redis_url,
        "namespace": namespace,
        "worker_id": "cw-" + namespace[-6:],
        "lease_ttl_s": 5,
        "worker_ttl_s": 5,
        "maintenance_interval_s": 0.2,
    }
    base.update(kw)
    return Worker(WorkerConfig(**base))


async def test_submit_wait_with_progress_then_get(client: Client, redis_url: str, namespace: str) -> None:
    updates: list[JobUpdate] = []
    job_id = await client.submit("simulation", {"steps": 6, "step_ms": 30, "result": {"n": 1}}, priority=70)
    w = worker(redis_url, namespace)
    async with anyio.create_task_group() as tg:
        tg.start_soon(w.run)
        done = await client.wait(job_id, on_progress=updates.append, timeout=30)
        w.handle_signal(2)
    assert isinstance(done, Job) and done.status == JobStatus.COMPLETED and done.result == {"n": 1}
    assert updates[0].status in (JobStatus.PENDING, JobStatus.IN_PROGRESS, JobStatus.ASSIGNED)
    assert updates[-1].status == JobStatus.COMPLETED and updates[-1].job is not None
    progress = [u.progress for u in updates if u.job is None and u.progress is not None]
    assert progress == sorted(progress), "progress reported in order"
    got = await client.get(job_id, events=10)
    assert got is not None and got.priority == 70 and got.attempt == 1
    assert got.events[-1].type == EventType.JOB_COMPLETED
    assert await client.get("no-such-job") is None


async def test_async_progress_callback_and_wait_timeout(client: Client) -> None:
    seen: list[JobStatus] = []

    async def on_progress(update: JobUpdate) -> None:
        seen.append(update.status)

    job_id = await client.submit("simulation", {"steps": 1})
    with pytest.raises(WaitTimeout) as info:
        await client.wait(job_id, on_progress=on_progress, timeout=0.3)  # no worker: it never ends
    assert info.value.job_id == job_id and seen[0] == JobStatus.PENDING
    assert (await client.get(job_id)).status == JobStatus.PENDING  # type: ignore[union-attr]


async def test_cancel_and_retry(client: Client) -> None:
    job_id = await client.submit("simulation", {}, id="c-1")
    assert job_id == "c-1"
    assert await client.cancel(job_id) == JobStatus.PENDING
    assert await client.cancel(job_id) is None, "an ended job is left alone"
    assert await client.retry(job_id) == JobStatus.PENDING
    with pytest.raises(NotRetryable):
        await client.retry(job_id)
    with pytest.raises(JobNotFound):
        await client.cancel("missing")


async def test_bad_input_raises_the_validation_error_and_writes_nothing(client: Client, calls: Calls) -> None:
    with pytest.raises(JobValidationError) as info:
        await client.submit("simulation", {}, priority=5000)
    assert any(p.startswith("priority") for p in info.value.problems)
    with pytest.raises(JobValidationError):
        await client.submit_many([{"service": "simulation"}, {"service": "Bad Name!"}])
    assert (await client.list()).jobs == []
    assert await calls.client.keys(f"{calls.keys.prefix}*") == [], "a refused submission writes nothing"


async def test_submit_many_list_pages_and_count(client: Client) -> None:
    ids = await client.submit_many([{"service": "simulation", "id": f"p{i}"} for i in range(5)])
    await client.submit("other", {}, id="o1")
    assert ids == [f"p{i}" for i in range(5)]
    seen: list[str] = []
    cursor = ""
    for _ in range(10):
        page = await client.list(service="simulation", cursor=cursor, limit=2)
        assert len(page.jobs) <= 2 and all(isinstance(j, Job) for j in page.jobs)
        seen += [j.id for j in page.jobs]
        cursor = page.next_cursor
        if not cursor:
            break
    assert seen == ids, "pages follow queue order without gaps or repeats"
    counts = await client.count()
    assert counts["pending"] == 6
    assert (await client.count(service="other"))["pending"] == 1


async def test_events_iterates_until_the_job_ends(client: Client, redis_url: str, namespace: str) -> None:
    job_id = await client.submit("simulation", {"steps": 3, "step_ms": 10})
    w = worker(redis_url, namespace)
    types: list[str] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(w.run)
        with anyio.fail_after(30):
            async for ev in client.events(job_id):
                assert ev.job == job_id
                types.append(ev.type)
        w.handle_signal(2)
    assert types[0] in (EventType.JOB_STARTED, EventType.JOB_ASSIGNED)
    assert types[-1] == EventType.JOB_COMPLETED
    past = [ev.type async for ev in client.events(job_id, follow=False)]
    assert past == types
    with pytest.raises(JobNotFound):
        [ev async for ev in client.events("missing", follow=False)]


async def test_explain_and_services(client: Client, calls: Calls) -> None:
    job_id = await client.submit("simulation", {}, requirements={"hardware.gpu_memory_gb": 16})
    await calls.register_worker("small", "m1", ["simulation"], {"hardware": {"gpu_memory_gb": 8}}, "t1", 60_000)
    await calls.register_worker("big", "m1", ["simulation"], {"hardware": {"gpu_memory_gb": 24}}, "t2", 60_000)
    ex = await client.explain(job_id)
    assert [(w.worker_id, w.can_run) for w in ex.workers] == [("big", True), ("small", False)]
    assert ex.able == 1 and "gpu_memory_gb" in (ex.workers[1].reason or "")
    assert await client.services() == []


def test_sync_client_works_from_plain_code_and_inside_a_running_loop(redis_url: str, namespace: str) -> None:
    with SyncClient(redis_url, namespace) as emp:
        job_id = emp.submit("simulation", {}, id="s1")
        got = emp.get(job_id)
        assert got is not None and got.status == JobStatus.PENDING
        assert [j.id for j in emp.list().jobs] == ["s1"]
        assert emp.count()["pending"] == 1
        assert emp.cancel(job_id) == JobStatus.PENDING
        assert [e.type for e in emp.events(job_id, follow=False)] == [EventType.JOB_CANCELLED]
        with pytest.raises(JobValidationError):
            emp.submit("simulation", {}, max_attempts=0)

    async def inside_a_loop() -> JobStatus | None:
        with SyncClient(redis_url, namespace) as emp:  # must not touch this loop
            job = emp.get("s1")
            return job.status if job else None

    assert anyio.run(inside_a_loop) == JobStatus.CANCELLED


def readme_example() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Python API", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README's Python API section has no python example"
    return match.group(1)


async def test_the_readme_example_runs(redis_url: str, namespace: str) -> None:
    code = readme_example()
    w = worker(redis_url, namespace)
    env = {**os.environ, "EMP_REDIS_URL": redis_url, "EMP_NAMESPACE": namespace}
    async with anyio.create_task_group() as tg:
        tg.start_soon(w.run)
        with anyio.fail_after(60):
            proc = await anyio.run_process([sys.executable, "-c", code], env=env, check=False)
        w.handle_signal(2)
    out = proc.stdout.decode()
    assert proc.returncode == 0, proc.stderr.decode()
    lines = out.splitlines()
    assert any(line.startswith("completed") for line in lines), out
    assert "in_progress" in out, "the progress callback printed updates"


async def test_wait_for_a_job_that_disappears(client: Client, calls: Calls) -> None:
    job_id = await client.submit("simulation", {})
    await calls.client.delete(calls.keys.job(job_id))
    with pytest.raises(JobNotFound):
        await client.wait(job_id, timeout=10)
