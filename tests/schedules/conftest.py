"""Fixtures of the schedule tests: Calls in a namespace of the test's own, on the session's redis-server."""

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
