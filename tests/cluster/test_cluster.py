"""emp on a local 3-master Redis Cluster: the library on every master, the lifecycle through real
`emp worker` processes, namespaces on different masters, the CLI and the demo."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
import redis
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from emp.client import Client
from emp.model.events import EventType
from emp.model.job import JobStatus
from emp.redis import library
from emp.redis.calls import Calls
from emp.redis.client import connect
from emp.redis.cluster import LocalCluster, master_of, namespace_keys, place_namespaces
from emp.redis.keys import Keys
from tests.integration.demo_helpers import DEMO_TIMEOUT_S, check_output, demo_env, run_demo
from tests.integration.helpers import WorkerProcs, wait_for, wire

pytestmark = pytest.mark.anyio

QUICK = {"steps": 0}


def node_client(url: str) -> redis.Redis:
    """A plain client of one node (not routed), to look at what that master holds."""
    return redis.Redis.from_url(url, decode_responses=True)


def node_url_of(cluster: LocalCluster, master: str) -> str:
    port = master.rsplit(":", 1)[1]
    [url] = [u for u in cluster.node_urls if f":{port}/" in u]
    return url


def loaded_version(url: str) -> str | None:
    with node_client(url) as c:
        libs = c.function_list(library="emp")
        if not libs:
            return None
        return str(c.fcall_ro("emp_version", 0))  # type: ignore[no-untyped-call,unused-ignore]


async def test_a_plain_url_of_a_node_is_detected_as_a_cluster(redis_cluster: LocalCluster) -> None:
    detected = connect(redis_cluster.node_urls[1])
    forced_single = connect(redis_cluster.node_urls[1] + "?cluster=0")
    try:
        assert isinstance(detected, RedisCluster)
        assert isinstance(forced_single, Redis)
        # Detected or explicit, the client reaches keys on every master.
        for ns in await place_namespaces(detected, "url", [n.name for n in detected.get_primaries()]):
            assert await detected.set(Keys(ns).guard("x"), "1")
    finally:
        await detected.aclose()
        await forced_single.aclose()


async def test_the_library_is_loaded_on_every_master(cluster_client: RedisCluster, redis_cluster: LocalCluster) -> None:
    version = library.library_source()[1]
    assert [loaded_version(url) for url in redis_cluster.node_urls] == [version] * 3
    versions = await library.server_versions(cluster_client)
    assert sorted(versions) == sorted(n.name for n in cluster_client.get_primaries())
    assert set(versions.values()) == {version}
    assert await library.server_version(cluster_client) == version


async def test_a_call_after_function_flush_on_one_master_reloads_it_there(
    cluster_client: RedisCluster, redis_cluster: LocalCluster, namespace: str
) -> None:
    master = await master_of(cluster_client, namespace)
    flushed = node_url_of(redis_cluster, master)
    others = [url for url in redis_cluster.node_urls if url != flushed]
    with node_client(flushed) as c:
        c.function_flush()
    assert loaded_version(flushed) is None
    assert await library.server_version(cluster_client) is None  # one master lacks it

    calls = Calls(cluster_client, namespace)
    assert await calls.submit([wire(payload=QUICK, id="after-flush")], 1 << 20) == ["pending"]
    version = library.library_source()[1]
    assert loaded_version(flushed) == version
    assert [loaded_version(url) for url in others] == [version, version]
    with node_client(flushed) as c:
        assert c.hget(Keys(namespace).job("after-flush"), "status") == "pending"  # the job is on that master


def test_functions_status_shows_every_master(redis_cluster: LocalCluster) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "emp", "--redis-url", redis_cluster.url, "functions", "status", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    info = json.loads(done.stdout)
    ports = sorted(url.split(":")[2].split("/")[0] for url in redis_cluster.node_urls)
    assert sorted(name.rsplit(":", 1)[1] for name in info["nodes"]) == ports
    assert info["loaded"] is True
    assert set(info["nodes"].values()) == {info["client_version"]}


async def test_the_whole_lifecycle_runs_through_worker_processes(
    redis_cluster: LocalCluster, namespace: str, tmp_path: Path
) -> None:
    workers = WorkerProcs(redis_cluster.url, namespace, tmp_path)
    try:
        workers.start("--concurrency", "2")
        async with Client(redis_cluster.url, namespace) as emp:
            # submit -> claim -> progress -> complete, followed through the job's own event stream
            job_id = await emp.submit("simulation", {"steps": 5, "step_ms": 20, "result": {"ok": 1}})
            with anyio.fail_after(30):
                done = await emp.wait(job_id)
            assert (done.status, done.result) == (JobStatus.COMPLETED, {"ok": 1})
            types = [ev.type async for ev in emp.events(job_id, follow=False)]
            assert types[-1] == EventType.JOB_COMPLETED
            assert EventType.JOB_STARTED in types and EventType.JOB_PROGRESS in types

            # cancel while running: the worker is told over pub/sub and takes the next job
            long_id = await emp.submit("simulation", {"steps": 1000, "step_ms": 20})

            async def running() -> bool:
                job = await emp.get(long_id)
                return job is not None and job.status == JobStatus.IN_PROGRESS

            await wait_for(running, what="the long job to run")
            assert await emp.cancel(long_id) == JobStatus.IN_PROGRESS
            await wait_for(lambda: _logged(workers, f"job {long_id} cancelled: interrupting"), what="interrupt")
            after = await emp.submit("simulation", QUICK)
            with anyio.fail_after(30):
                assert (await emp.wait(after)).status == JobStatus.COMPLETED
            cancelled = await emp.get(long_id)
            assert cancelled is not None and cancelled.status == JobStatus.CANCELLED
            assert (await emp.count())["completed"] == 2
    finally:
        workers.kill_all()


async def _logged(workers: WorkerProcs, text: str) -> bool:
    return text in workers.log(0)


async def test_two_namespaces_on_two_masters_each_run_their_jobs(
    cluster_client: RedisCluster, redis_cluster: LocalCluster, namespace: str, tmp_path: Path
) -> None:
    masters = [n.name for n in cluster_client.get_primaries()][:2]
    spaces = await place_namespaces(cluster_client, namespace + "-", masters)
    assert [await master_of(cluster_client, ns) for ns in spaces] == masters
    procs = []
    try:
        for ns in spaces:
            (tmp_path / ns).mkdir()
            procs.append(WorkerProcs(redis_cluster.url, ns, tmp_path / ns))
            procs[-1].start()
        for ns in spaces:
            async with Client(redis_cluster.url, ns) as emp:
                ids = [await emp.submit("simulation", QUICK) for _ in range(5)]
                with anyio.fail_after(30):
                    assert {(await emp.wait(i)).status for i in ids} == {JobStatus.COMPLETED}
        for ns, master in zip(spaces, masters, strict=True):
            # Each namespace's jobs live on its own master, and only there.
            with node_client(node_url_of(redis_cluster, master)) as c:
                assert c.zcard(Keys(ns).done("completed")) == 5
            for url in redis_cluster.node_urls:
                if url != node_url_of(redis_cluster, master):
                    with node_client(url) as c:
                        assert c.keys("{" + ns + "}:*") == []
    finally:
        for p in procs:
            p.kill_all()


def test_cli_submit_wait_and_jobs_commands(redis_cluster: LocalCluster, namespace: str, tmp_path: Path) -> None:
    workers = WorkerProcs(redis_cluster.url, namespace, tmp_path)
    base = [sys.executable, "-m", "emp", "--redis-url", redis_cluster.url, "--namespace", namespace]
    try:
        workers.start()
        submitted = subprocess.run(
            [*base, "submit", "simulation", "--payload", '{"steps": 2, "step_ms": 10}', "--id", "cli-1", "--wait"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert submitted.returncode == 0, submitted.stdout + submitted.stderr
        shown = subprocess.run([*base, "jobs", "show", "cli-1", "--json"], capture_output=True, text=True, timeout=60)
        assert json.loads(shown.stdout)["status"] == "completed"
        listed = subprocess.run([*base, "jobs", "list", "--json"], capture_output=True, text=True, timeout=60)
        assert "cli-1" in listed.stdout
        counted = subprocess.run([*base, "jobs", "count", "--json"], capture_output=True, text=True, timeout=60)
        assert json.loads(counted.stdout)["completed"] == 1
    finally:
        workers.kill_all()


@pytest.mark.timeout(DEMO_TIMEOUT_S + 60)
def test_demo_smoke_against_the_cluster(redis_cluster: LocalCluster, tmp_path: Path) -> None:
    proc = run_demo(demo_env(tmp_path, redis_cluster.url), "--smoke")
    namespace = check_output(proc)
    with node_client(node_url_of(redis_cluster, _master_port(redis_cluster, namespace))) as c:
        assert c.hget(Keys(namespace).job("flaky"), "status") == "completed"
        assert c.zcard(Keys(namespace).workers) == 0  # every worker went offline


def _master_port(cluster: LocalCluster, namespace: str) -> str:
    slot = key_slot(Keys(namespace).events.encode())
    with node_client(cluster.node_urls[0]) as c:
        for first, last, owner in c.cluster("SLOTS"):
            if first <= slot <= last:
                return f"127.0.0.1:{owner[1]}"
    raise AssertionError(f"no master holds slot {slot}")


async def test_namespace_keys_scans_the_master_of_the_namespace(cluster_client: RedisCluster, namespace: str) -> None:
    """What `emp bench` deletes a namespace with on a cluster (SCAN is keyless: it must be aimed)."""
    for i in range(5):
        await cluster_client.set(Keys(namespace).guard(f"k{i}"), "1")
    found = [key async for page in namespace_keys(cluster_client, namespace, page=2) for key in page]
    assert sorted(found) == sorted(Keys(namespace).guard(f"k{i}") for i in range(5))
