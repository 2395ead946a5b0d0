"""Each real-service connector inside a worker, against its fake service, through Redis.

The same scenarios for every connector (the issue's "must hold" list): success with outputs
stored and progress monotonic to 100; a validation error fails once as malformed; an OOM is
resource_exhausted and the retry goes to a different worker; a cancel mid-run interrupts the
service and the job ends cancelled; the service dying mid-job loses no job, the service is
reported offline, then idle once it is back, and the job completes.

Workers run in-process (anyio tasks); fakes run as child processes on loopback ports, so killing
one is a real crash.
"""

from __future__ import annotations

import hashlib
import json
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import anyio
import httpx
import pytest

from emp.redis.calls import Calls
from emp.stand_ins import a1111 as fake_a1111
from emp.stand_ins import comfyui as fake_comfyui
from emp.stand_ins import ollama as fake_ollama
from emp.stand_ins import rest as fake_rest
from emp.worker.bindings import build_connector
from emp.worker.connectors.base import ConnectorBinding
from emp.worker.runtime import Worker, WorkerConfig
from emp.worker.service_map import ConnectorSpec
from tests.fake_service import FakeService
from tests.integration.helpers import wait_for, wire

pytestmark = pytest.mark.anyio


def _stat(path: str, key: str) -> Callable[[str], int]:
    """A fake's own counter of interrupts/disconnects/cancels, read from its inspection endpoint."""

    def read(url: str) -> int:
        value = httpx.get(url + path, timeout=5).json()[key]
        return len(value) if isinstance(value, list) else int(value)

    return read


def _comfy_interrupts(url: str) -> int:
    """Prompts the fake ComfyUI recorded as interrupted (history entries with that message)."""
    history = httpx.get(url + "/history", timeout=5).json()
    return sum(
        1
        for entry in history.values()
        if any(m[0] == "execution_interrupted" for m in entry.get("status", {}).get("messages", []))
    )


@dataclass(frozen=True)
class Case:
    name: str
    fake: str
    fake_args: tuple[str, ...]
    ok: Callable[[], dict[str, Any]]
    invalid: Callable[[], dict[str, Any]]
    oom: Callable[[], dict[str, Any]]
    slow: Callable[[int], dict[str, Any]]
    interrupts: Callable[[str], int]
    options: dict[str, Any] = field(default_factory=dict)
    stores_outputs: bool = True
    slow_steps_per_s: int = 50
    """Steps of ``slow`` per second with ``fake_args`` (to size jobs in seconds)."""


CASES = [
    Case(
        "comfyui",
        "comfyui",
        ("--step-ms", "20"),
        lambda: {"workflow": fake_comfyui.workflow_ok()},
        lambda: {"workflow": fake_comfyui.workflow_invalid()},
        lambda: {"workflow": fake_comfyui.workflow_oom()},
        lambda steps: {"workflow": fake_comfyui.workflow_slow(steps)},
        _comfy_interrupts,
    ),
    Case(
        "a1111",
        "a1111",
        ("--step-ms", "20"),
        fake_a1111.payload_ok,
        fake_a1111.payload_invalid,
        fake_a1111.payload_oom,
        fake_a1111.payload_slow,
        _stat("/fake/stats", "interrupts"),
        {"poll_interval_s": 0.05},
    ),
    Case(
        "ollama",
        "ollama",
        ("--token-ms", "20"),
        fake_ollama.payload_ok,
        fake_ollama.payload_invalid,
        fake_ollama.payload_oom,
        fake_ollama.payload_slow,
        _stat("/fake/stats", "disconnects"),
        stores_outputs=False,
    ),
    Case(
        "rest",
        "rest",
        ("--step-ms", "20"),
        lambda: fake_rest.payload_outputs(2),
        fake_rest.payload_invalid,
        fake_rest.payload_oom,
        fake_rest.payload_slow,
        _stat("/_fake/state", "cancels"),
        {
            "mode": "async",
            "submit_path": "/jobs",
            "status_path": "/jobs/{id}",
            "cancel_path": "/jobs/{id}/cancel",
            "progress_field": "progress",
            "progress_max": 1.0,
            "poll_interval_s": 0.05,
            "outputs_field": "files",
            "class_field": "error_class",
        },
    ),
]


@pytest.fixture(params=CASES, ids=[c.name for c in CASES])
def case(request: pytest.FixtureRequest) -> Case:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def fake(case: Case, tmp_path: Path) -> AsyncIterator[FakeService]:  # type: ignore[misc]
    svc = FakeService(case.fake, *case.fake_args, log_dir=tmp_path).start()
    try:
        yield svc
    finally:
        svc.stop()


def make_worker(
    case: Case, fake: FakeService, redis_url: str, namespace: str, out: Path, worker_id: str, **kw: Any
) -> Worker:
    spec = ConnectorSpec(case.name, case.name, fake.url, (case.name,), case.options)
    cfg = WorkerConfig(
        redis_url=redis_url,
        namespace=namespace,
        worker_id=worker_id,
        machine_id=f"box-{worker_id}",
        services=[case.name],
        output_url=str(out),
        progress_min_interval_s=0.02,
        maintenance_interval_s=3600,
        idle_poll_s=0.5,
        drain_timeout_s=0,
        service_check_interval_s=0.1,
        **kw,
    )
    return Worker(cfg, bindings=[ConnectorBinding(build_connector(spec), [case.name], fake.url, case.name)])


@asynccontextmanager
async def running(*workers: Worker) -> AsyncIterator[None]:
    async with anyio.create_task_group() as tg:
        for w in workers:
            tg.start_soon(w.run)
        try:
            yield
        finally:
            for w in workers:
                w.handle_signal(signal.SIGTERM)
                w.handle_signal(signal.SIGTERM)


async def fields(calls: Calls, job_id: str) -> dict[str, str]:
    data = await calls.client.hgetall(calls.keys.job(job_id))  # the raw hash: these tests read stored text
    assert data
    return dict(data)


def status_is(calls: Calls, job_id: str, *statuses: str) -> Callable[[], Any]:
    async def check() -> bool:
        return (await fields(calls, job_id)).get("status") in statuses

    return check


async def job_events(calls: Calls, job_id: str, etype: str) -> list[dict[str, str]]:
    entries = await calls.client.xrange(calls.keys.job_events(job_id))
    return [f for _, f in entries if f.get("type") == etype]


async def test_success_stores_outputs_and_progress_reaches_100(
    case: Case, fake: FakeService, calls: Calls, redis_url: str, namespace: str, tmp_path: Path
) -> None:
    worker = make_worker(case, fake, redis_url, namespace, tmp_path / "out", "w1")
    await calls.submit([wire(case.name, case.ok(), id="ok")], 1 << 20)
    async with running(worker):
        await wait_for(status_is(calls, "ok", "completed", "failed"), what="job to end")
        [service] = await calls.list_services()
        assert (service.connector, service.url, service.workers) == (case.name, fake.url, ["w1"])
        assert service.status in ("idle", "active")
        if case.name != "rest":  # the REST fake's connector has no models configured here
            assert service.models, "the service's models are in its status record"
    job = await fields(calls, "ok")
    assert job["status"] == "completed", job
    result = json.loads(job["result"])
    progress = [float(json.loads(e["data"])["progress"]) for e in await job_events(calls, "ok", "job_progress")]
    assert progress, "progress was reported"
    assert progress == sorted(progress) and progress[-1] == 100.0
    assert float(job["progress"]) == 100.0
    last = (await calls.client.xrevrange(calls.keys.job_events("ok"), count=1))[0][1]
    assert last["type"] == "job_completed", "the completion event follows the final progress"
    if case.stores_outputs:
        assert result["outputs"], result
        for out in result["outputs"]:
            path = Path(unquote(urlsplit(out["url"]).path))
            assert path.is_relative_to((tmp_path / "out" / "ok" / "1").resolve())
            data = path.read_bytes()
            assert len(data) == out["size"] > 0 and hashlib.sha256(data).hexdigest() == out["sha256"]
    else:
        assert "outputs" not in result and result  # a text result


async def test_validation_error_fails_once_as_malformed(
    case: Case, fake: FakeService, calls: Calls, redis_url: str, namespace: str, tmp_path: Path
) -> None:
    worker = make_worker(case, fake, redis_url, namespace, tmp_path / "out", "w1")
    await calls.submit([wire(case.name, case.invalid(), id="bad", max_attempts=3)], 1 << 20)
    async with running(worker):
        await wait_for(status_is(calls, "bad", "failed", "completed"), what="job to end")
    job = await fields(calls, "bad")
    assert (job["status"], job["failure_class"], job["attempt"]) == ("failed", "malformed", "1")
    assert job["error"], "the service's message is kept"


async def test_oom_is_resource_exhausted_and_the_retry_goes_to_another_worker(
    case: Case, fake: FakeService, calls: Calls, redis_url: str, namespace: str, tmp_path: Path
) -> None:
    a = make_worker(case, fake, redis_url, namespace, tmp_path / "out", "wa")
    b = make_worker(case, fake, redis_url, namespace, tmp_path / "out", "wb")
    await calls.submit([wire(case.name, case.oom(), id="oom", max_attempts=2)], 1 << 20)
    async with running(a, b):
        await wait_for(status_is(calls, "oom", "failed", "completed"), timeout=30, what="job to end")
    job = await fields(calls, "oom")
    assert (job["status"], job["failure_class"]) == ("failed", "resource_exhausted")
    starts = await job_events(calls, "oom", "job_started")
    workers = {int(e["attempt"]): e["worker"] for e in starts}
    assert set(workers) == {1, 2} and workers[1] != workers[2], workers


async def test_cancel_mid_run_interrupts_the_service(
    case: Case, fake: FakeService, calls: Calls, redis_url: str, namespace: str, tmp_path: Path
) -> None:
    worker = make_worker(case, fake, redis_url, namespace, tmp_path / "out", "w1")
    await calls.submit([wire(case.name, case.slow(case.slow_steps_per_s * 30), id="long")], 1 << 20)
    async with running(worker):

        async def progressing() -> bool:
            return float((await fields(calls, "long")).get("progress") or 0) > 0

        await wait_for(progressing, what="job to make progress")
        before = case.interrupts(fake.url)
        assert await calls.cancel("long", "user asked") == "in_progress"
        await wait_for(lambda: _anyio_true(case.interrupts(fake.url) > before), what="service to be interrupted")
        await wait_for(lambda: _anyio_true(worker.slots[0].job is None), what="worker to drop the job")
    assert (await fields(calls, "long"))["status"] == "cancelled"


async def test_service_dies_mid_job_and_nothing_is_lost(
    case: Case, fake: FakeService, calls: Calls, redis_url: str, namespace: str, tmp_path: Path
) -> None:
    worker = make_worker(case, fake, redis_url, namespace, tmp_path / "out", "w1")
    await calls.submit([wire(case.name, case.slow(case.slow_steps_per_s * 2), id="j")], 1 << 20)

    async def service_state() -> str:
        rows = await calls.list_services()
        return rows[0].status if rows else ""

    async with running(worker):

        async def progressing() -> bool:
            return float((await fields(calls, "j")).get("progress") or 0) > 0

        await wait_for(progressing, what="job to make progress")
        fake.kill()
        await wait_for(lambda: _eq(service_state, "offline"), what="service reported offline")
        await wait_for(lambda: _anyio_true(bool(worker.paused)), what="the worker to stop claiming")
        job = await fields(calls, "j")
        assert job["status"] in ("pending", "scheduled"), job  # back in the queue: not failed, not lost
        assert (await calls.client.hget(calls.keys.worker("w1"), "status")) == "paused"
        fake.start()
        await wait_for(lambda: _eq(service_state, "idle", "active"), what="service back up")
        await wait_for(status_is(calls, "j", "completed", "failed"), timeout=30, what="job to finish")
    job = await fields(calls, "j")
    assert job["status"] == "completed", job
    assert int(job.get("tries") or 0) <= 1, "the outage did not use up attempts"


async def _anyio_true(value: bool) -> bool:
    return value


async def _eq(read: Callable[[], Any], *wanted: str) -> bool:
    return bool(await read() in wanted)
