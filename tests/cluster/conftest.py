"""Fixtures for the Redis Cluster tests: a cluster client on the session's local 3-master cluster."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio.cluster import RedisCluster

from emp.redis import library
from emp.redis.client import connect
from emp.redis.cluster import LocalCluster


@pytest.fixture
async def cluster_client(redis_cluster: LocalCluster) -> AsyncIterator[RedisCluster]:
    client = connect(redis_cluster.url)
    assert isinstance(client, RedisCluster)
    await library.ensure_loaded(client)
    yield client
    await client.aclose()
