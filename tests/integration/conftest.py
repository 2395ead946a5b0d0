"""Fixtures for tests that run emp processes: a Calls on the test namespace, `emp worker` subprocesses."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from emp.redis import library
from emp.redis.calls import Calls
from emp.redis.client import connect
from tests.integration.helpers import WorkerProcs


@pytest.fixture
async def calls(redis_url: str, namespace: str) -> AsyncIterator[Calls]:
    client = connect(redis_url)
    await library.ensure_loaded(client)
    yield Calls(client, namespace)
    await client.aclose()


@pytest.fixture
def workers(redis_url: str, namespace: str, tmp_path: Path) -> Iterator[WorkerProcs]:
    procs = WorkerProcs(redis_url, namespace, tmp_path)
    yield procs
    procs.kill_all()
