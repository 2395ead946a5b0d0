"""The REST connector against the fake REST service (emp/stand_ins/rest.py), sync and async."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from emp.stand_ins import rest as fake_rest
from emp.storage import FileStorage, OutputSink
from emp.worker.connectors.base import ConnectorError, JobContext
from emp.worker.connectors.rest import RestConnector
from tests.fake_service import FakeService
from tests.polling import wait_for

pytestmark = pytest.mark.anyio

SYNC = {"mode": "sync", "submit_path": "/run", "class_field": "error_class", "outputs_field": "files"}
ASYNC = {
    "mode": "async",
    "submit_path": "/jobs",
    "status_path": "/jobs/{id}",
    "class_field": "error_class",
    "progress_field": "progress",
    "poll_interval_s": 0.005,
    "cancel_path": "/jobs/{id}/cancel",
    "outputs_field": "files",
}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeService]:
    with FakeService("rest", "--step-ms", "10") as service:
        yield service


class Recorder:
    def __init__(self) -> None:
        self.values: list[float] = []
        self.messages: list[str] = []

    async def __call__(self, percent: float, message: str) -> None:
        self.values.append(percent)
        self.messages.append(message)


def make_ctx(tmp_path: Path, payload: dict[str, Any]) -> tuple[JobContext, Recorder, OutputSink]:
    rec = Recorder()
    sink = OutputSink(FileStorage(tmp_path), "job1", 1)
    return JobContext("job1", 1, payload, rec, sink, service="rest"), rec, sink


@pytest.fixture
async def connect(fake: FakeService) -> AsyncIterator[Any]:
    made: list[RestConnector] = []

    def build(options: dict[str, Any], url: str | None = None) -> RestConnector:
        conn = RestConnector.from_config(url or fake.url, options)
        made.append(conn)
        return conn

    yield build
    for conn in made:
        await conn.aclose()


async def fake_state(url: str) -> dict[str, Any]:
    async with httpx.AsyncClient(trust_env=False) as client:
        state: dict[str, Any] = (await client.get(f"{url}/_fake/state")).json()
        return state


async def run_failing(conn: RestConnector, ctx: JobContext) -> ConnectorError:
    with pytest.raises(ConnectorError) as info:
        await conn.run(ctx)
    return info.value


# --- sync ---------------------------------------------------------------------------------------


async def test_sync_returns_the_result_and_ends_at_100(connect, tmp_path):
    ctx, rec, _ = make_ctx(tmp_path, fake_rest.payload_ok(steps=2))
    result = await connect(SYNC).run(ctx)
    assert result == {"echo": "hello", "steps": 2}
    assert rec.values[0] == 0.0 and rec.values[-1] == 100.0


async def test_sync_stores_base64_outputs_and_drops_them_from_the_result(connect, tmp_path):
    ctx, _, sink = make_ctx(tmp_path, fake_rest.payload_outputs(2))
    result = await connect(SYNC).run(ctx)
    assert "files" not in result
    assert [o.name for o in sink.stored] == ["image-0.png", "image-1.png"]
    assert [o.content_type for o in sink.stored] == ["image/png", "image/png"]
    for i, out in enumerate(sink.stored):
        assert await sink.storage.get(out.url) == fake_rest.file_bytes(i)


@pytest.mark.parametrize(
    ("options", "payload", "failure_class", "text"),
    [
        (SYNC, fake_rest.payload_invalid(), "malformed", "'prompt' is required"),
        ({**SYNC, "class_field": None}, fake_rest.payload_invalid(), "malformed", "400"),
        (SYNC, fake_rest.payload_oom(), "resource_exhausted", "CUDA out of memory"),
        # Without a class field, the OOM text alone says resource_exhausted.
        ({"submit_path": "/run"}, fake_rest.payload_oom(), "resource_exhausted", "CUDA out of memory"),
        (SYNC, {"fail": "error"}, "transient", "model crashed"),
        (SYNC, {"fail": "failed_200"}, "unknown", "refused the input"),
        (SYNC, fake_rest.payload_garbage(), "transient", "not JSON"),
    ],
)
async def test_sync_failures_are_classified(connect, tmp_path, options, payload, failure_class, text):
    options = {k: v for k, v in options.items() if v is not None}
    ctx, rec, _ = make_ctx(tmp_path, payload)
    exc = await run_failing(connect(options), ctx)
    assert exc.failure_class == failure_class
    assert text in str(exc)
    assert 100.0 not in rec.values


async def test_sync_cancel_interrupts_the_service(connect, fake, tmp_path):
    conn = connect({**SYNC, "cancel_path": "/interrupt"})
    before = (await fake_state(fake.url))["interrupts"]
    runs = (await fake_state(fake.url))["runs"]
    ctx, _, _ = make_ctx(tmp_path, fake_rest.payload_slow())
    async with anyio.create_task_group() as tg:
        tg.start_soon(conn.run, ctx)
        await wait_for(lambda: _runs_above(fake.url, runs), what="the fake to get the run")
        tg.cancel_scope.cancel()
    state = await fake_state(fake.url)
    assert state["interrupts"] == before + 1


async def _runs_above(url: str, runs: int) -> bool:
    return bool((await fake_state(url))["runs"] > runs)


# --- async --------------------------------------------------------------------------------------


async def test_async_progress_is_monotonic_and_ends_at_100(connect, tmp_path):
    ctx, rec, sink = make_ctx(tmp_path, fake_rest.payload_outputs(1) | {"steps": 20})
    result = await connect(ASYNC).run(ctx)
    assert result == {"echo": "hello", "steps": 20}
    assert rec.values == sorted(rec.values)
    assert rec.values[0] == 0.0 and rec.values[-1] == 100.0
    assert any(0.0 < v < 100.0 for v in rec.values), rec.values  # the service's own progress came through
    assert [o.name for o in sink.stored] == ["image-0.png"]


@pytest.mark.parametrize(
    ("options", "payload", "failure_class", "text"),
    [
        (ASYNC, fake_rest.payload_invalid(), "malformed", "'prompt' is required"),
        (ASYNC, fake_rest.payload_oom(), "resource_exhausted", "CUDA out of memory"),
        ({**ASYNC, "class_field": "nothing.here"}, fake_rest.payload_oom(), "resource_exhausted", "CUDA"),
        (ASYNC, {"fail": "error", "steps": 2}, "unknown", "model crashed"),
        (ASYNC, {"fail": "no_id"}, "transient", "without a job id"),
        (ASYNC, fake_rest.payload_garbage(), "transient", "not JSON"),
        ({**ASYNC, "poll_error_limit": 1}, {"fail": "flaky_poll"}, "transient", "502"),
    ],
)
async def test_async_failures_are_classified(connect, tmp_path, options, payload, failure_class, text):
    ctx, _, _ = make_ctx(tmp_path, payload)
    exc = await run_failing(connect(options), ctx)
    assert exc.failure_class == failure_class
    assert text in str(exc)


async def test_async_rides_out_a_few_failed_polls(connect, tmp_path):
    ctx, rec, _ = make_ctx(tmp_path, {"fail": "flaky_poll", "steps": 2})
    result = await connect(ASYNC).run(ctx)
    assert result["steps"] == 2 and rec.values[-1] == 100.0


async def test_async_gives_up_polling_and_cancels_the_job_in_the_service(connect, fake, tmp_path):
    before = len((await fake_state(fake.url))["cancels"])
    ctx, _, _ = make_ctx(tmp_path, {"fail": "flaky_poll", "steps": 1000})
    await run_failing(connect({**ASYNC, "poll_error_limit": 0}), ctx)
    state = await fake_state(fake.url)
    assert len(state["cancels"]) == before + 1
    assert state["jobs"][state["cancels"][-1]] == "cancelled"


async def test_async_cancel_sends_the_cancel_call(connect, fake, tmp_path):
    ctx, rec, _ = make_ctx(tmp_path, fake_rest.payload_slow())
    async with anyio.create_task_group() as tg:
        tg.start_soon(connect(ASYNC).run, ctx)
        await wait_for(lambda: _has_progress(rec, "running"), what="the job to run")
        tg.cancel_scope.cancel()
    state = await fake_state(fake.url)
    assert state["cancels"], "the fake never saw the cancel"
    assert state["jobs"][state["cancels"][-1]] == "cancelled"
    assert 100.0 not in rec.values


async def _has_progress(rec: Recorder, message: str) -> bool:
    return message in rec.messages


async def test_health_and_models(connect):
    conn = connect({"models_path": "/models"})
    assert (await conn.health()).ok
    assert await conn.list_models() == fake_rest.MODELS
    assert await connect({"models": ["a", "b"]}).list_models() == ["a", "b"]
    bad = await connect({"health_path": "/nope"}).health()
    assert bad.state == "error" and "404" in bad.message


async def test_a_dead_service_is_unavailable_until_it_restarts(tmp_path):
    service = FakeService("rest", "--step-ms", "10").start()
    conn = RestConnector.from_config(service.url, ASYNC)
    try:
        assert (await conn.health()).ok
        ctx, rec, _ = make_ctx(tmp_path, fake_rest.payload_slow())

        async def kill_when_running() -> None:
            await wait_for(lambda: _has_progress(rec, "running"), what="the job to run")
            await anyio.to_thread.run_sync(service.kill)

        async with anyio.create_task_group() as tg:
            tg.start_soon(kill_when_running)
            exc = await run_failing(conn, ctx)
        assert exc.failure_class == "service_unavailable"
        health = await conn.health()
        assert health.state == "offline"
        ctx2, _, _ = make_ctx(tmp_path / "2", fake_rest.payload_ok())
        assert (await run_failing(conn, ctx2)).failure_class == "service_unavailable"
        await anyio.to_thread.run_sync(service.start)
        await wait_for(lambda: _healthy(conn), what="health ok after the restart")
        ctx3, _, _ = make_ctx(tmp_path / "3", fake_rest.payload_ok())
        assert (await conn.run(ctx3))["echo"] == "hello"
    finally:
        await conn.aclose()
        service.stop()


async def _healthy(conn: RestConnector) -> bool:
    return (await conn.health()).ok
