"""Fixtures of the flow tests: a Client on the test namespace and `emp worker` subprocesses."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from emp.client import Client
from tests.integration.helpers import WorkerProcs


@pytest.fixture
async def client(redis_url: str, namespace: str) -> AsyncIterator[Client]:
    async with Client(redis_url, namespace, max_payload_bytes=1 << 20) as c:
        yield c


@pytest.fixture
def workers(redis_url: str, namespace: str, tmp_path: Path) -> Iterator[WorkerProcs]:
    procs = WorkerProcs(redis_url, namespace, tmp_path)
    yield procs
    procs.kill_all()
