"""Fixtures of the Function tests (one module per .lua file); their helpers are in helpers.py.

Every test gets its own namespace (``namespace`` fixture, tests/conftest.py) and talks to the
session's private redis-server through :class:`emp.redis.calls.Calls`, the typed wrappers; it then
checks the raw keys and streams with ``calls.client`` and the key names of ``calls.keys``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from emp.redis import library
from emp.redis.calls import Calls
from emp.redis.client import connect


@pytest.fixture
async def calls(redis_url: str, namespace: str) -> AsyncIterator[Calls]:
    """Calls over a fresh client, in this test's own namespace, with the library loaded."""
    client = connect(redis_url)
    try:
        await library.ensure_loaded(client)
        yield Calls(client, namespace)
    finally:
        await client.aclose()
