"""A private local Redis Cluster (N masters, no replicas) for the tests and ``emp bench``.

Each node is an :class:`~emp.redis.embedded.EmbeddedRedis` started with ``--cluster-enabled yes`` on
127.0.0.1 (a free port whose bus port, +10000, is free too); ``redis-cli --cluster create`` then
splits the 16384 slots evenly between them. :meth:`LocalCluster.start` returns once every node
reports ``cluster_state:ok`` and agrees on who owns every slot, so the first command routes right.
It never touches any other Redis.

Usage::

    with LocalCluster(data_dir, masters=3) as cluster:
        run(cluster.url)      # redis+cluster://127.0.0.1:<first port>/0
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType

import redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.backoff import NoBackoff
from redis.retry import Retry

from emp.errors import BrokerError, ConfigError
from emp.redis.client import RedisClient
from emp.redis.embedded import EmbeddedRedis
from emp.redis.keys import Keys

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 30.0
"""How long the nodes may take to agree on the slot map (gossip on loopback takes ~1-2 s)."""

SLOTS = 16384

PLACEMENT_TRIES = 10_000
"""Names tried when looking for namespaces on given masters (16384 slots over a few masters: a few tries)."""


class LocalCluster:
    """``masters`` private cluster nodes, joined into one cluster. ``stop()`` stops them all."""

    def __init__(self, data_dir: Path | None = None, masters: int = 3, *, cli: str = "redis-cli") -> None:
        if masters < 3:
            raise ValueError("redis-cli --cluster create needs at least 3 masters")
        self.masters = masters
        self.cli = cli
        self._data_dir = data_dir
        self._owns_dir = data_dir is None
        self.nodes: list[EmbeddedRedis] = []

    def start(self) -> LocalCluster:
        cli = shutil.which(self.cli)
        if cli is None:
            raise ConfigError(f"{self.cli} not found on PATH: it ships with redis-server (Debian: redis-tools)")
        if self._data_dir is None:
            self._data_dir = Path(tempfile.mkdtemp(prefix="emp-cluster-"))
        try:
            for i in range(self.masters):
                node = EmbeddedRedis(self._data_dir / f"node{i}", cluster_node=True)
                self.nodes.append(node)
                node.start()
            addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
            done = subprocess.run(
                [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=READY_TIMEOUT_S,
                check=False,
            )
            if done.returncode != 0:
                raise BrokerError(f"redis-cli --cluster create failed: {(done.stdout + done.stderr).strip()[-500:]}")
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        log.info("local redis cluster up: %s", " ".join(addresses))
        return self

    def _wait_ready(self) -> None:
        """Every node says cluster_state:ok and maps every slot to a node the same way."""
        clients = [
            redis.Redis(host="127.0.0.1", port=n.port, socket_timeout=2.0, retry=Retry(NoBackoff(), 0))
            for n in self.nodes
        ]
        try:
            deadline = time.monotonic() + READY_TIMEOUT_S
            while time.monotonic() < deadline:
                if all(_ready(c) for c in clients) and len({_slot_map(c) for c in clients}) == 1:
                    return
                time.sleep(0.05)
            raise BrokerError(f"the local cluster did not reach cluster_state:ok within {READY_TIMEOUT_S:g} s")
        finally:
            for c in clients:
                c.close()

    def stop(self) -> None:
        """Stop every node and remove a temporary data dir. Safe to call twice."""
        for node in self.nodes:
            node.stop()
        self.nodes = []
        if self._owns_dir and self._data_dir is not None:
            shutil.rmtree(self._data_dir, ignore_errors=True)
            self._data_dir = None

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The explicit cluster URL of the first node (any node would do: the client finds the others)."""
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}/0"

    def cpu_seconds(self) -> list[float]:
        """CPU time (user + sys) each node has used so far, in the order of :attr:`node_urls`."""
        out = []
        for url in self.node_urls:
            with redis.Redis.from_url(url, socket_timeout=5.0) as node:
                info = node.info("cpu")
            out.append(float(info["used_cpu_user"]) + float(info["used_cpu_sys"]))
        return out

    @property
    def node_urls(self) -> list[str]:
        """Plain ``redis://`` URLs of each node, for talking to one node on its own."""
        return [node.url for node in self.nodes]


def _ready(client: redis.Redis) -> bool:
    try:
        info: dict[str, str] = client.cluster("INFO")  # parsed by redis-py into a dict of str
    except redis.RedisError:
        return False
    return info.get("cluster_state") == "ok" and info.get("cluster_slots_ok") == str(SLOTS)


def _slot_map(client: redis.Redis) -> tuple[tuple[int, int, int], ...]:
    """(first slot, last slot, master port) of every range, as this node sees it."""
    try:
        raw = client.cluster("SLOTS")
    except redis.RedisError:
        return ()
    return tuple(sorted((int(entry[0]), int(entry[1]), int(entry[2][1])) for entry in raw))


def _cluster(client: RedisClient) -> RedisCluster:
    if not isinstance(client, RedisCluster):
        raise BrokerError("this Redis is not a cluster (see docs/cluster.md for the URL of one)")
    return client


async def master_names(client: RedisClient) -> list[str]:
    """``host:port`` of every master of the cluster."""
    cluster = _cluster(client)
    await cluster.initialize()
    return sorted(node.name for node in cluster.get_primaries())


async def master_node(client: RedisClient, namespace: str) -> ClusterNode:
    """The master that holds ``namespace``, to send it a keyless command (SCAN) with ``target_nodes``."""
    cluster = _cluster(client)
    await cluster.initialize()
    node = cluster.get_node_from_key(Keys(namespace).events)
    if node is None:
        raise BrokerError(f"no master holds the slot of namespace {namespace} (a failover under way?)")
    return node


async def master_of(client: RedisClient, namespace: str) -> str:
    """The ``host:port`` of the master that holds ``namespace`` (all its keys share one slot)."""
    return str((await master_node(client, namespace)).name)


async def place_namespaces(client: RedisClient, stem: str, masters: list[str]) -> list[str]:
    """One namespace name per entry of ``masters`` (``host:port``; repeat a master to get several
    there), each ``<stem><n>`` whose slot that master holds: how to put namespaces where you want."""
    wanted = list(masters)
    found: list[str | None] = [None] * len(wanted)
    for n in range(PLACEMENT_TRIES):
        name = f"{stem}{n}"
        where = await master_of(client, name)
        for i, master in enumerate(wanted):
            if found[i] is None and master == where:
                found[i] = name
                break
        if all(found):
            return [name for name in found if name is not None]
    raise BrokerError(f"no namespace {stem}<n> found on each of {masters} in {PLACEMENT_TRIES} tries")


async def namespace_keys(client: RedisClient, namespace: str, page: int = 2000) -> AsyncIterator[list[str]]:
    """Every key of ``namespace``, a SCAN page at a time (non-empty lists); on a cluster, SCAN runs on
    the master that holds the namespace (a keyless command is not routed by itself)."""
    pattern = "{" + namespace + "}:*"
    node = await master_node(client, namespace) if isinstance(client, RedisCluster) else None
    cursor = 0
    while True:
        if node is None:
            cursor, found = await client.scan(cursor, match=pattern, count=page)
        else:
            reply = await client.execute_command("SCAN", cursor, "MATCH", pattern, "COUNT", page, target_nodes=node)
            # The cluster client answers ({node name: cursor}, keys), even for one node.
            cursor, found = int(reply[0][node.name]), reply[1]
        if found:
            yield [str(k) for k in found]
        if cursor == 0:
            return
