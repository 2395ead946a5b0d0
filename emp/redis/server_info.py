"""Which Redis server process answers: its ``run_id`` (``INFO server``), new every time it starts.

A coordinator compares it between readings to notice a restart (emp/coordinator/redis_watch.py).
On a Redis Cluster every master has its own: the answer joins them, so a restart of any one of
them changes it.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio.cluster import RedisCluster

from emp.redis.client import RedisClient


async def run_id(client: RedisClient) -> str:
    """The server's ``run_id`` (on a cluster: the primaries' run ids, sorted and joined by commas)."""
    if isinstance(client, RedisCluster):
        per_node: Any = await client.info("server", target_nodes=RedisCluster.PRIMARIES)
        ids = sorted(str(info.get("run_id", "")) for info in dict(per_node).values() if isinstance(info, dict))
        return ",".join(ids)
    info: Any = await client.info("server")
    return str(info.get("run_id", ""))
