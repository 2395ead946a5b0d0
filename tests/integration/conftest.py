"""Fixtures for tests that run emp processes: a Calls on the test namespace, `emp worker` subprocesses."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.helpers import WorkerProcs


@pytest.fixture
def workers(redis_url: str, namespace: str, tmp_path: Path) -> Iterator[WorkerProcs]:
    procs = WorkerProcs(redis_url, namespace, tmp_path)
    yield procs
    procs.kill_all()
