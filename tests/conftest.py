"""Session-wide test fixtures: a private redis-server, a namespace per test, the anyio backend.

The Redis Cluster tests (tests/cluster/) share one private 3-master cluster per session.
Tests never flush Redis: each test isolates its keys under its own namespace (``{t<hex>}:...``).
Set EMP_TEST_REDIS_URL to run against a Redis >= 7 you provide instead (tests write to it).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from emp.errors import ConfigError
from emp.redis import library
from emp.redis.calls import Calls
from emp.redis.client import connect
from emp.redis.cluster import LocalCluster
from emp.redis.embedded import EmbeddedRedis


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of the session's Redis: EMP_TEST_REDIS_URL, or a private redis-server on a free port."""
    given = os.environ.get("EMP_TEST_REDIS_URL")
    if given:
        yield given
        return
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"), persist=False)
    try:
        server.start()
    except ConfigError as exc:
        # Fail, never skip: a missing redis-server must not turn into a green run.
        pytest.fail(f"the tests need redis-server >= 7: {exc}", pytrace=False)
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A private 3-master Redis Cluster on free loopback ports, one per session (started on first use)."""
    cluster = LocalCluster(tmp_path_factory.mktemp("cluster"), masters=3)
    try:
        cluster.start()
    except ConfigError as exc:
        pytest.fail(f"the cluster tests need redis-server >= 7 and redis-cli: {exc}", pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def namespace() -> str:
    """A namespace of this test's own, so tests share one Redis without flushing it."""
    return "t" + uuid.uuid4().hex[:12]


@pytest.fixture
async def calls(redis_url: str, namespace: str) -> AsyncIterator[Calls]:
    """Calls over a fresh client, in this test's own namespace, with the library loaded."""
    client = connect(redis_url)
    try:
        await library.ensure_loaded(client)
        yield Calls(client, namespace)
    finally:
        await client.aclose()
