"""Redis clients built from a URL: nothing else.

Automatic command retries are off: redis-py retries a command after a lost reply by default, and a
retried FCALL could claim a second job (reference/reliability.md). emp retries itself where a call
is idempotent (claims carry a request id; complete is idempotent). On a Redis Cluster, MOVED and
ASK redirections are still followed: the node that answers with one did not run the command.

The URL alone says whether the server is a Redis Cluster (docs/cluster.md):

- ``redis+cluster://`` / ``rediss+cluster://``, or ``?cluster=1``: a cluster, without asking;
- ``?cluster=0``: one Redis, without asking;
- otherwise the node the URL names is asked once per process (``INFO cluster``, ``cluster_enabled``).
  When it cannot be reached at that moment, the client is a single-Redis one: an explicit URL is
  the robust choice for a fleet on a cluster.

TLS and login beyond the URL (docs/security.md): :class:`ConnectOptions`, built from the
``EMP_REDIS_*`` settings by ``Settings.connect_options()``. The URL wins over them: a user,
password or ``ssl_*`` query parameter written in the URL is used as it is.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    ClusterDownError,
    RedisClusterUnreachableError,
    RedisError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry as SyncRetry

log = logging.getLogger(__name__)

RedisClient = Redis | RedisCluster
"""What :func:`connect` returns: one Redis, or a Redis Cluster that routes each command by its key."""

TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    OSError,
    ClusterDownError,
    TryAgainError,
    SlotNotCoveredError,
    RedisClusterUnreachableError,
)
"""Redis is unreachable or slow right now: retry later (the call may or may not have run). On a cluster
also: no node serves the slot now (a failover under way), or no node of the cluster answers."""

UNREACHABLE_ERRORS: tuple[type[Exception], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ConnectionError,
    TimeoutError,
    RedisClusterUnreachableError,
)
"""The errors that mean "no Redis answered" (the CLI's exit code for an unreachable Redis)."""

ANY_REDIS_ERROR = RedisError
"""The base of every error redis-py raises, for callers outside emp.redis (they never import redis)."""

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
"""Explicit cluster schemes and the plain scheme redis-py is given."""

TLS_SCHEMES = frozenset({"rediss", "rediss+cluster"})
"""The URL schemes of a TLS connection (the CA and client certificate settings apply to these only)."""

DETECT_TIMEOUT_S = 2.0
"""How long the one-time ``INFO cluster`` probe may take (it runs once per URL and process)."""

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}

_detected: dict[str, bool] = {}
"""Per plain URL: whether its server said cluster_enabled:1 (asked once per process)."""


@dataclass(frozen=True, slots=True)
class ConnectOptions:
    """How to check the server's certificate and log in, beyond what the URL says.

    ``ca_file``: the CA bundle that signed the server's certificate (else the system's CAs);
    ``cert_file`` / ``key_file``: a client certificate, for a server that asks for one
    (``tls-auth-clients yes``); ``username`` / ``password``: used when the URL has none.
    """

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never in a repr: reprs end up in logs

    def redis_kwargs(self, plain_url: str) -> dict[str, Any]:
        """redis-py's keyword arguments for ``plain_url`` (from :func:`parse_cluster_url`).

        redis-py lets the URL's own options override these, which is the precedence wanted here.
        The TLS ones only go with a ``rediss://`` URL: a plain connection class refuses them.
        """
        kwargs: dict[str, Any] = {}
        if self.username:
            kwargs["username"] = self.username
        if self.password:
            kwargs["password"] = self.password
        if is_tls_url(plain_url):
            kwargs["ssl_cert_reqs"] = "required"
            for name, value in (
                ("ssl_ca_certs", self.ca_file),
                ("ssl_certfile", self.cert_file),
                ("ssl_keyfile", self.key_file),
            ):
                if value:
                    kwargs[name] = value
        return kwargs


NO_OPTIONS = ConnectOptions()


def is_tls_url(url: str) -> bool:
    """Whether ``url`` connects over TLS (``rediss://``, ``rediss+cluster://``)."""
    return urlsplit(url).scheme.lower() in TLS_SCHEMES


_HUNG_UP = ("connection reset by peer", "connection closed by server")
"""How redis-py words a server that closed the socket at once: what a TLS-only port does to plain text."""


def tls_hint(url: str | None, error: BaseException) -> str:
    """For a plain ``redis://`` URL whose server hung up at once: a hint that it may want TLS; else ""."""
    if not url or is_tls_url(url) or not urlsplit(url).scheme.lower().startswith("redis"):
        return ""
    text = str(error).lower()
    return " (if that port speaks TLS only, use rediss://)" if any(s in text for s in _HUNG_UP) else ""


def parse_cluster_url(url: str) -> tuple[str, bool | None]:
    """(the URL redis-py is given, True/False when the URL says cluster or not, None to ask the server)."""
    parts = urlsplit(url)
    explicit: bool | None = None
    scheme = parts.scheme
    if scheme in CLUSTER_SCHEMES:
        scheme, explicit = CLUSTER_SCHEMES[scheme], True
    query = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name != "cluster":
            query.append((name, value))
            continue
        if value.lower() not in _TRUE | _FALSE:
            raise ValueError(f"cluster={value!r} in the Redis URL: use cluster=1 or cluster=0")
        if explicit is None or value.lower() in _TRUE:  # a cluster scheme wins over cluster=0
            explicit = value.lower() in _TRUE
    return urlunsplit((scheme, parts.netloc, parts.path, urlencode(query), parts.fragment)), explicit


def _server_is_cluster(plain_url: str, options: dict[str, Any]) -> bool | None:
    """Ask the node once: True/False, or None when it cannot be reached now. ``options``: the
    login and TLS keyword arguments of the real client (the probe logs in as it does)."""
    if plain_url in _detected:
        return _detected[plain_url]
    probe = redis.Redis.from_url(
        plain_url,
        socket_connect_timeout=DETECT_TIMEOUT_S,
        socket_timeout=DETECT_TIMEOUT_S,
        retry=SyncRetry(NoBackoff(), 0),
        **options,
    )
    try:
        info = probe.info("cluster")
    except RedisError as exc:
        log.debug("cannot ask the Redis server whether it is a cluster (%s): using it as one Redis", exc)
        return None
    finally:
        probe.close()
    _detected[plain_url] = str(info.get("cluster_enabled", 0)) == "1"
    return _detected[plain_url]


def connect(
    url: str,
    *,
    options: ConnectOptions = NO_OPTIONS,
    max_connections: int | None = None,
    timeout_s: float | None = None,
) -> RedisClient:
    """An asyncio client with str replies, no silent retries, and health checks on idle sockets.

    A cluster client when the URL says so or the server is a cluster node (see the module docstring);
    ``max_connections`` is then per node. ``options``: TLS files and a login the URL does not carry.
    """
    plain, explicit = parse_cluster_url(url)
    extra = options.redis_kwargs(plain)
    is_cluster = explicit if explicit is not None else _server_is_cluster(plain, extra)
    if is_cluster:
        return RedisCluster.from_url(
            plain,
            **extra,
            decode_responses=True,
            retry=Retry(NoBackoff(), 0),
            socket_connect_timeout=5,
            socket_timeout=timeout_s,
            health_check_interval=30,
            **({} if max_connections is None else {"max_connections": max_connections}),
        )
    return Redis.from_url(
        plain,
        **extra,
        decode_responses=True,
        retry=Retry(NoBackoff(), 0),
        max_connections=max_connections,
        socket_connect_timeout=5,
        socket_timeout=timeout_s,
        health_check_interval=30,
    )


def is_cluster(client: RedisClient) -> bool:
    return isinstance(client, RedisCluster)
