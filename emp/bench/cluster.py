"""`emp bench --only cluster`: does a fleet scale by namespace on a Redis Cluster?

The bench starts its own local 3-master cluster (:class:`emp.redis.cluster.LocalCluster`) and runs
the same end-to-end load twice: two namespaces, each with one `emp worker` process, each sent
``jobs`` no-op jobs at once; first with both namespaces on one master, then on two masters. The
figure is jobs/s over both namespaces, from the first submit to the last completion. Scaling by
namespace needs a core per redis-server as well as for the workers: on 2 cores the two runs share
them, so the ratio says more about the machine than about emp.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from emp._process import die_with_parent
from emp.bench.report import Metric
from emp.model.job import parse_submission
from emp.redis import library
from emp.redis.calls import Calls
from emp.redis.client import RedisClient, connect
from emp.redis.cluster import LocalCluster, master_names, place_namespaces

SERVICE = "simulation"
BATCH = 1000
START_TIMEOUT_S = 60.0
MAX_PAYLOAD = 1 << 20

Log = Callable[[str], None]


async def measure(jobs: int, concurrency: int, log_dir: Path, log: Log, stem: str) -> list[Metric]:
    """Two namespaces on one master, then on two: jobs/s over both, and the ratio."""
    cluster = await asyncio.to_thread(LocalCluster(masters=3).start)  # a temporary dir, removed on stop
    try:
        client = connect(cluster.url)
        try:
            await library.ensure_loaded(client)
            masters = await master_names(client)
            layouts = {
                "1 master": await place_namespaces(client, f"{stem}-one-", [masters[0], masters[0]]),
                "2 masters": await place_namespaces(client, f"{stem}-two-", [masters[0], masters[1]]),
            }
            rates: dict[str, tuple[float, list[float]]] = {}
            for name, spaces in layouts.items():
                log(f"  cluster: 2 namespaces on {name}, {jobs:,} jobs each, 1 worker x {concurrency} slots each")
                rates[name] = await _run(cluster, client, spaces, jobs, concurrency, log_dir)
        finally:
            await client.aclose()
    finally:
        await asyncio.to_thread(cluster.stop)
    (one, cpu_one), (two, cpu_two) = rates["1 master"], rates["2 masters"]
    cores = os.cpu_count() or 1

    def busy(cpu: list[float]) -> str:
        return ", ".join(f"{c:.0%}" for c in cpu) + " of a core"

    return [
        Metric(
            "cluster_one_master",
            "cluster: 2 namespaces on 1 master",
            one,
            "jobs/s",
            note=f"{2 * jobs:,} no-op jobs, 2 worker procs × {concurrency} slots; masters busy {busy(cpu_one)}",
        ),
        Metric(
            "cluster_two_masters",
            "cluster: 2 namespaces on 2 masters",
            two,
            "jobs/s",
            note=f"same load, one namespace per master; masters busy {busy(cpu_two)}",
        ),
        Metric(
            "cluster_scaling",
            "cluster: scaling by namespace (2 masters / 1)",
            two / one if one else 0.0,
            "×",
            note=f"near 2× needs a core per redis-server and for the workers; this machine has {cores} core(s)",
        ),
    ]


async def _run(
    cluster: LocalCluster, client: RedisClient, spaces: list[str], jobs: int, concurrency: int, log_dir: Path
) -> tuple[float, list[float]]:
    """(jobs/s over every namespace, CPU share of each master over the run)."""
    calls = [Calls(client, ns) for ns in spaces]
    procs = [_start_worker(cluster.url, ns, concurrency, log_dir) for ns in spaces]
    try:
        await asyncio.gather(*(_warm_up(c, p) for c, p in zip(calls, procs, strict=True)))
        wire = dict(parse_submission({"id": "x", "service": SERVICE, "payload": {"steps": 0}}).to_wire(MAX_PAYLOAD))
        cpu0 = cluster.cpu_seconds()
        t0 = time.perf_counter()
        await asyncio.gather(*(_submit_and_wait(c, wire, jobs, procs) for c in calls))
        elapsed = time.perf_counter() - t0
        cpu = [(b - a) / elapsed for a, b in zip(cpu0, cluster.cpu_seconds(), strict=True)]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return len(spaces) * jobs / elapsed, cpu


def _start_worker(url: str, namespace: str, concurrency: int, log_dir: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "EMP_REDIS_URL": url}  # never in argv: a URL may hold a password
    argv = [sys.executable, "-m", "emp", "--namespace", namespace, "worker", "--services", SERVICE]
    argv += ["--concurrency", str(concurrency), "--id", f"cl-{namespace}"]
    with open(log_dir / f"{namespace}.log", "ab") as out:
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env, preexec_fn=die_with_parent
        )


async def _warm_up(calls: Calls, proc: subprocess.Popen[bytes]) -> None:
    """One job through the worker: it is up, registered and claiming."""
    wire = dict(parse_submission({"id": "warm", "service": SERVICE, "payload": {"steps": 0}}).to_wire(MAX_PAYLOAD))
    await calls.submit([wire], MAX_PAYLOAD)
    deadline = time.monotonic() + START_TIMEOUT_S
    while int(await calls.client.zcard(calls.keys.done("completed"))) < 1:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the worker of {calls.keys.namespace} did not run a job (exit {proc.poll()})")
        await asyncio.sleep(0.02)


async def _submit_and_wait(
    calls: Calls, wire: dict[str, object], jobs: int, procs: list[subprocess.Popen[bytes]]
) -> None:
    for start in range(0, jobs, BATCH):
        await calls.submit([{**wire, "id": f"c{i}"} for i in range(start, min(jobs, start + BATCH))], MAX_PAYLOAD)
    deadline = time.monotonic() + max(60.0, jobs / 200)
    while int(await calls.client.zcard(calls.keys.done("completed"))) < jobs + 1:  # + the warm-up job
        if any(p.poll() is not None for p in procs):
            raise RuntimeError("a worker process of the cluster run exited")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{calls.keys.namespace}: not every job completed in time")
        await asyncio.sleep(0.005)
