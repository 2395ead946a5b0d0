"""Redis clients built from a URL: nothing else.

Automatic command retries are off: redis-py retries a command after a lost reply by default, and a
retried FCALL could claim a second job (reference/reliability.md). emp retries itself where a call
is idempotent (claims carry a request id; complete is idempotent).
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff


def connect(url: str, *, max_connections: int | None = None, timeout_s: float | None = None) -> Redis:
    """An asyncio client with str replies, no silent retries, and health checks on idle sockets."""
    return Redis.from_url(
        url,
        decode_responses=True,
        retry=Retry(NoBackoff(), 0),
        max_connections=max_connections,
        socket_connect_timeout=5,
        socket_timeout=timeout_s,
        health_check_interval=30,
    )
