"""What the connector tests against the A1111 and Ollama fakes share: a job context that records
progress, one fake per test module, the fakes' counters, and a job run in the background until
the test acts on it (cancels it, kills the service)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from emp.storage import FileStorage, OutputSink
from emp.worker.connectors.base import Connector, ConnectorError, JobContext
from tests.fake_service import FakeService
from tests.polling import wait_for


class Recorder:
    """A progress callback that keeps every report."""

    def __init__(self) -> None:
        self.values: list[tuple[float, str]] = []

    async def __call__(self, percent: float, message: str) -> None:
        self.values.append((percent, message))

    @property
    def percents(self) -> list[float]:
        return [p for p, _ in self.values]


def make_ctx(payload: dict[str, Any], tmp_path: Path, job_id: str = "job1") -> tuple[JobContext, Recorder]:
    recorder = Recorder()
    sink = OutputSink(FileStorage(tmp_path), job_id, 1)
    return JobContext(job_id=job_id, attempt=1, payload=payload, progress=recorder, outputs=sink), recorder


def fake_fixture(module: str, *args: str) -> Any:
    """A module-scoped fixture: the fake ``emp.stand_ins.<module>`` running for the module's tests
    (``fake = fake_fixture("ollama", "--token-ms", "5")``)."""

    @pytest.fixture(scope="module")
    def fake() -> Iterator[FakeService]:
        with FakeService(module, *args) as service:
            yield service

    return fake


async def stats(url: str) -> dict[str, Any]:
    """The fake's counters (``GET /fake/stats``)."""
    async with httpx.AsyncClient(trust_env=False) as client:
        body: dict[str, Any] = (await client.get(f"{url}/fake/stats")).json()
        return body


async def stats_if(url: str, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
    """The fake's counters if ``predicate`` holds for them (for :func:`wait_for`)."""
    current = await stats(url)
    return current if predicate(current) else None


async def wait_for_progress(recorder: Recorder) -> None:
    """Until the job has reported progress between 0 and 100 (it runs in the service)."""

    async def progressing() -> bool:
        return any(0 < p < 100 for p in recorder.percents)

    await wait_for(progressing, what="progress")


async def cancel_once_progressing(connector: Connector, ctx: JobContext, recorder: Recorder) -> list[str]:
    """Run the job and cancel it once it reports progress; how it ended: ``["cancelled"]`` or
    ``["returned"]``."""
    outcome: list[str] = []

    async def job() -> None:
        try:
            await connector.run(ctx)
            outcome.append("returned")
        except anyio.get_cancelled_exc_class():
            outcome.append("cancelled")
            raise

    async with anyio.create_task_group() as tg:
        tg.start_soon(job)
        await wait_for_progress(recorder)
        tg.cancel_scope.cancel()
    return outcome


async def errors_after(
    connector: Connector, ctx: JobContext, recorder: Recorder, action: Callable[[], Awaitable[Any]]
) -> list[ConnectorError]:
    """Run the job, await ``action()`` once it reports progress, and let it end; the ConnectorError
    it raised (``[]`` if it returned)."""
    errors: list[ConnectorError] = []

    async def job() -> None:
        try:
            await connector.run(ctx)
        except ConnectorError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(job)
        await wait_for_progress(recorder)
        await action()
    return errors
