"""Redis clients built from a URL: nothing else.

Automatic command retries are off: redis-py retries a command after a lost reply by default, and a
retried FCALL could claim a second job (reference/reliability.md). emp retries itself where a call
is idempotent (claims carry a request id; complete is idempotent).
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

TRANSIENT_ERRORS: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError, OSError)
"""Redis is unreachable or slow right now: retry later (the call may or may not have run)."""

UNREACHABLE_ERRORS: tuple[type[Exception], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ConnectionError,
    TimeoutError,
)
"""The errors that mean "no Redis answered" (the CLI's exit code for an unreachable Redis)."""

ANY_REDIS_ERROR = RedisError
"""The base of every error redis-py raises, for callers outside emp.redis (they never import redis)."""


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
