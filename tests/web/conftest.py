"""Fixtures of the web monitor tests: the coordinator app (tests/coordinator's ``start_api``), `emp
worker` processes, and a headless Chromium from the distribution's packages driven by Playwright."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from tests.coordinator.conftest import start_api  # noqa: F401  (a fixture, shared)
from tests.integration.helpers import WorkerProcs

CHROMIUM = "chromium"
"""The system browser (Debian's `chromium` package; `make test` installs it: scripts/ensure-chromium).
Never a browser Playwright downloads (`playwright install` cannot reach the internet here)."""


def _missing(why: str) -> NoReturn:
    # In CI a missing browser is a failure (the test must run there); elsewhere it may be skipped.
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(
            f"the web monitor test needs {why} (CI=true: not skipped; see scripts/ensure-chromium)", pytrace=False
        )
    pytest.skip(f"the web monitor test needs {why}: run scripts/ensure-chromium (or `make test`)")


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """A headless system Chromium (closed at the end)."""
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        _missing("the playwright package (pip install -e '.[dev]')")
    executable = shutil.which(CHROMIUM)
    if executable is None:
        _missing("Chromium on PATH (apt-get install -y chromium)")
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
def workers(redis_url: str, namespace: str, tmp_path: Path) -> Iterator[WorkerProcs]:
    procs = WorkerProcs(redis_url, namespace, tmp_path)
    yield procs
    procs.kill_all()
