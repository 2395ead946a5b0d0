"""`emp bench`: the measurements behind the speed targets (make bench).

Every measurement is one ``measure_*`` coroutine that gets a :class:`Bench` (a Redis connection,
fresh namespaces, clean-up) and a :class:`Plan` (the sizes) and returns :class:`Metric` values.
``run_bench`` runs the selected ones in order and collects what they return; one that fails is
reported as an error and the others still run.

Redis: a private ``redis-server`` (:class:`EmbeddedRedis`, no persistence) unless a URL is given.
On the private server the bench flushes between measurements; on a given server it never flushes:
it uses namespaces of its own (``<ns>-bench-<run>-<phase>``) and deletes their keys afterwards
(SCAN + UNLINK). It does change the server's slowlog settings while it measures (restored after),
runs CONFIG RESETSTAT, and its memory figure is only as clean as the server is quiet.

Jobs are no-op simulation jobs (payload ``{"steps": 0}``) submitted with the same wire format as
``emp submit`` (``parse_submission(...).to_wire()``). Client times are ``time.perf_counter``.
Server-side costs come from INFO commandstats (FCALL usec_per_call over a stretch of calls of one
kind) and, for the slowest call, from SLOWLOG. A zero SLOWLOG threshold is never used to time
calls: Redis then also logs every command a Function runs, which inflates the Function's time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import anyio

import emp
from emp import defaults
from emp._process import die_with_parent
from emp.bench import commandstats, mixed_fleet, peers
from emp.bench.report import (
    MEASUREMENTS,  # noqa: E402  (one home for the names: report.py)
    NOT_QUICK,
    BenchResult,
    CommandCost,
    Metric,
    percentile,
)
from emp.model.job import parse_submission
from emp.redis import library
from emp.redis.calls import Calls, ClaimedJob
from emp.redis.client import connect
from emp.redis.cluster import namespace_keys
from emp.redis.embedded import EmbeddedRedis

SUBMIT_IN_FLIGHT = 2
"""Batches a submitter keeps in flight: one encoding on the client while Redis runs the other."""

SERVICE = "simulation"
NOOP_PAYLOAD: dict[str, Any] = {"steps": 0}
MAX_PAYLOAD = defaults.MAX_PAYLOAD_BYTES
BATCH = defaults.MAX_BATCH
LEASE_MS = 300_000
"""Lease of the in-process bench worker: long enough never to lapse during a measurement."""
WORKER_TTL_MS = 600_000

# The targets emp commits to (README "Benchmark"). Units as in the metrics below.
TARGET_E2E_CONCURRENT = 10_000.0  # jobs/s, 2 worker processes with concurrent slots
TARGET_E2E_ONE_SLOT = 5_000.0  # jobs/s, 2 worker processes with one slot each
TARGET_SUBMIT_BATCHED = 40_000.0  # jobs/s
TARGET_VS_BULLMQ_CONCURRENT = 1.3  # emp 2 procs × slots / BullMQ concurrency 10, same method, same hour
TARGET_VS_BULLMQ_ONE_SLOT = 1.0  # emp 2 procs × 1 slot / BullMQ concurrency 1
TARGET_REDIS_US_PER_JOB = 60.0  # µs of Function time (inner commands included) per processed job
TARGET_PICKUP_P50_MS = 2.0
TARGET_PICKUP_P99_MS = 10.0
TARGET_DEPTH_RATIO = 1.5  # claim cost at the deepest queue / at 1k
TARGET_SIGS_RATIO = 3.0  # claim cost with 100 signatures / with 1
TARGET_SLOWEST_MS = 10.0
TARGET_MEMORY_B = 2048.0  # bytes per pending job with a 1 KB payload

Log = Callable[[str], None]


class BenchError(Exception):
    """A measurement could not be made (the message says why); the others still run."""


# -- plan -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Plan:
    """The sizes of one run. :func:`make_plan` gives the full and the ``--quick`` sizes."""

    quick: bool = False
    only: tuple[str, ...] = MEASUREMENTS
    submit_single: int = 5_000
    submit_batched: int = 100_000
    e2e_jobs: int = 50_000
    e2e_concurrency: int = 16
    e2e_procs: tuple[int, ...] = (1, 2)
    pickup_jobs: int = 200
    pickup_gap_s: float = 0.02
    mixed_pickup_jobs: int = 200
    depths: tuple[int, ...] = (1_000, 100_000, 1_000_000)
    claim_cycles: int = 2_000
    sig_counts: tuple[int, ...] = (1, 10, 100)
    slow_jobs: int = 500_000
    slow_rounds: int = 300
    memory_jobs: int = 100_000
    memory_payload_bytes: int = 1024
    comfyui_jobs: int = 200
    api_quick: bool = False
    """The ``api`` scenario at its small sizes (emp.bench.api_bench.QUICK_SIZES)."""
    watch_scale: int = 1
    """The ``watch`` fleet and its run are divided by this (1: 100 machines, 400 workers, 100,000 pending)."""
    comfyui_url: str | None = None
    """A ComfyUI to measure the worker's overhead against (default: the fake of emp/stand_ins)."""
    peers: dict[str, Any] | None = None
    """The peer harness's result (peers-main.json, parsed): `e2e` then reports emp / BullMQ ratios."""
    worker_start_timeout_s: float = 60.0
    worker_stop_timeout_s: float = 15.0

    def params(self) -> dict[str, Any]:
        return {
            "quick": self.quick,
            "only": list(self.only),
            "submit_single": self.submit_single,
            "submit_batched": self.submit_batched,
            "e2e_jobs": self.e2e_jobs,
            "e2e_concurrency": self.e2e_concurrency,
            "pickup_jobs": self.pickup_jobs,
            "pickup_gap_ms": round(self.pickup_gap_s * 1000, 3),
            "mixed_pickup_jobs": self.mixed_pickup_jobs,
            "depths": list(self.depths),
            "claim_cycles": self.claim_cycles,
            "sig_counts": list(self.sig_counts),
            "slow_jobs": self.slow_jobs,
            "memory_jobs": self.memory_jobs,
            "memory_payload_bytes": self.memory_payload_bytes,
            "comfyui_jobs": self.comfyui_jobs,
            "comfyui": "given" if self.comfyui_url else "fake",
            "api": "quick" if self.api_quick else "full",
            "watch_scale": self.watch_scale,
            "peers": peers.started(self.peers) or "given" if self.peers is not None else None,
        }


QUICK = Plan(
    quick=True,
    submit_single=300,
    submit_batched=5_000,
    e2e_jobs=2_000,
    e2e_concurrency=16,
    pickup_jobs=40,
    mixed_pickup_jobs=40,
    depths=(1_000, 10_000),
    claim_cycles=300,
    slow_jobs=20_000,
    slow_rounds=40,
    memory_jobs=5_000,
    comfyui_jobs=30,
    api_quick=True,
    watch_scale=10,
)


def parse_only(text: str | None) -> tuple[str, ...]:
    """``"e2e,pickup"`` → the names in run order; ValueError naming the unknown ones."""
    if not text:
        return MEASUREMENTS
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in MEASUREMENTS]
    if unknown:
        raise ValueError(f"unknown measurement(s) {', '.join(unknown)}: choose from {', '.join(MEASUREMENTS)}")
    return tuple(n for n in MEASUREMENTS if n in names)


def make_plan(
    quick: bool = False,
    only: str | None = None,
    jobs: int | None = None,
    concurrency: int | None = None,
    comfyui_url: str | None = None,
    peers_doc: dict[str, Any] | None = None,
) -> Plan:
    plan = QUICK if quick else Plan()
    chosen = parse_only(only)
    if quick and not only:
        chosen = tuple(name for name in chosen if name not in NOT_QUICK)
    plan = replace(plan, only=chosen, comfyui_url=comfyui_url, peers=peers_doc)
    if jobs is not None:
        if jobs < 1:
            raise ValueError("--jobs must be at least 1")
        plan = replace(plan, e2e_jobs=jobs)
    if concurrency is not None:
        if concurrency < 1:
            raise ValueError("--concurrency must be at least 1")
        plan = replace(plan, e2e_concurrency=concurrency)
    return plan


# -- jobs -------------------------------------------------------------------------------------


def job_template(
    payload: dict[str, Any] | None = None,
    requirements: dict[str, Any] | None = None,
    priority: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One submit wire, built exactly as `emp submit` builds it; copy it with another ``id``."""
    doc: dict[str, Any] = {"id": "bench", "service": SERVICE, "payload": NOOP_PAYLOAD if payload is None else payload}
    if requirements:
        doc["requirements"] = requirements
    if priority is not None:
        doc["priority"] = priority
    doc.update(extra)
    return dict(parse_submission(doc).to_wire(MAX_PAYLOAD))


def make_wires(template: dict[str, Any], prefix: str, start: int, stop: int) -> list[dict[str, Any]]:
    return [{**template, "id": f"{prefix}{i}"} for i in range(start, stop)]


# -- the bench context ------------------------------------------------------------------------


@dataclass
class Bench:
    """A connection, fresh namespaces and their clean-up, and raw INFO/CONFIG/SLOWLOG helpers.

    ``own_server``: the Redis is the bench's own (FLUSHDB allowed); otherwise only the bench's
    own namespaces are ever deleted.
    """

    url: str
    own_server: bool
    ns_prefix: str
    log: Log = lambda _msg: None
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    namespaces: list[str] = field(default_factory=list)
    redis_commands: dict[str, list[CommandCost]] = field(default_factory=dict)
    """Where the Redis time of a run went, per job (filled by the measurements, shown after the metrics)."""

    def __post_init__(self) -> None:
        self.client = connect(self.url, max_connections=64)

    async def setup(self) -> None:
        await library.ensure_loaded(self.client)

    async def close(self) -> None:
        for ns in list(self.namespaces):
            await self.drop(ns)
        await self.client.aclose()

    def fresh(self, phase: str) -> Calls:
        """Calls bound to a namespace nobody has used: ``<prefix>-bench-<run>-<phase>``."""
        ns = f"{self.ns_prefix}-bench-{self.run_id}-{phase}"
        self.namespaces.append(ns)
        return Calls(self.client, ns)

    async def drop(self, ns_or_calls: str | Calls) -> None:
        """Delete a bench namespace's keys: FLUSHDB on our own server, SCAN + UNLINK otherwise."""
        ns = ns_or_calls if isinstance(ns_or_calls, str) else ns_or_calls.keys.namespace
        if ns in self.namespaces:
            self.namespaces.remove(ns)
        if self.own_server:
            await self.client.flushdb()  # our own server: every bench namespace goes at once
            self.namespaces.clear()
            return
        async for found in namespace_keys(self.client, ns):
            await self.client.unlink(*found)

    # raw server helpers (a benchmark may look at the server directly)

    async def used_memory(self) -> int:
        info = await self.client.info("memory")
        return int(info["used_memory"])

    async def memory_usage(self, key: str) -> int:
        value: Any = await self.client.memory_usage(key, samples=0)
        return int(value or 0)

    async def fcall_stats(self) -> tuple[int, float]:
        """(calls, usec_per_call) of FCALL since the last CONFIG RESETSTAT."""
        info = await self.client.info("commandstats")
        stat = info.get("cmdstat_fcall") or {}
        return int(stat.get("calls", 0)), float(stat.get("usec_per_call", 0.0))

    async def command_totals(self) -> dict[str, commandstats.Totals]:
        """Every command's calls and µs since the last CONFIG RESETSTAT (the bench's own left out)."""
        return commandstats.parse(await self.client.info("commandstats"))

    async def reset_stats(self) -> None:
        await self.client.config_resetstat()

    async def cpu_seconds(self) -> float:
        """CPU time the Redis server has used (user + sys), to tell whether Redis is the bottleneck."""
        info = await self.client.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    async def fcall_usec(self) -> float:
        """Total µs spent in FCALL since the last CONFIG RESETSTAT."""
        calls, per_call = await self.fcall_stats()
        return calls * per_call

    @contextlib.asynccontextmanager
    async def slowlog(self, threshold_us: int, max_len: int) -> AsyncIterator[list[dict[str, Any]]]:
        """Log every call slower than ``threshold_us`` inside the block; the list is filled with the
        FCALL/FCALL_RO entries ({"function", "duration_us"}) when the block ends.
        The server's previous slowlog settings are restored afterwards."""
        old = await self.client.config_get("slowlog-*")
        entries: list[dict[str, Any]] = []
        await self.client.config_set("slowlog-max-len", max_len)
        await self.client.config_set("slowlog-log-slower-than", threshold_us)
        await self.client.slowlog_reset()
        try:
            yield entries
            raw = await self.client.slowlog_get(max_len)
            for item in raw:
                command = item.get("command", "")
                if isinstance(command, bytes):
                    command = command.decode(errors="replace")
                words = str(command).split()
                if len(words) >= 2 and words[0].lower() in ("fcall", "fcall_ro"):
                    function = words[1]
                    if function == "emp_list_jobs" and len(words) > 5:
                        function += f"({words[5]})"  # the status listed
                    entries.append({"function": function, "duration_us": int(item["duration"])})
        finally:
            for name in ("slowlog-log-slower-than", "slowlog-max-len"):
                value = old.get(name)
                if value is not None:
                    await self.client.config_set(name, value)
            await self.client.slowlog_reset()


async def fill(
    calls: Calls,
    template: dict[str, Any] | Callable[[int], dict[str, Any]],
    n: int,
    prefix: str,
    *,
    inflight: int = 2,
    log: Log | None = None,
) -> float:
    """Submit ``n`` jobs in batches of ``MAX_BATCH`` (``inflight`` calls at a time); returns jobs/s.

    ``template`` is one wire for all jobs, or a function of the job's index giving its wire."""
    tasks: set[asyncio.Future[list[str]]] = set()
    t0 = time.perf_counter()
    report_every = max(BATCH, (n // 10) // BATCH * BATCH)
    for start in range(0, n, BATCH):
        stop = min(n, start + BATCH)
        if callable(template):
            make = template
            wires = [{**make(i), "id": f"{prefix}{i}"} for i in range(start, stop)]
        else:
            wires = make_wires(template, prefix, start, stop)
        if len(tasks) >= inflight:
            done, tasks = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        tasks.add(asyncio.create_task(calls.submit(wires, MAX_PAYLOAD)))
        if log is not None and n >= 50_000 and start and start % report_every == 0:
            log(f"  filled {start:,}/{n:,}")
    for task in asyncio.as_completed(tasks):
        await task
    return n / (time.perf_counter() - t0)


async def register_bench_worker(calls: Calls, worker_id: str, capabilities: dict[str, Any] | None = None) -> None:
    caps = {"services": [SERVICE], **(capabilities or {})}
    await calls.register_worker(worker_id, "bench", [SERVICE], caps, f"{worker_id}-wake", WORKER_TTL_MS)


# -- worker processes -------------------------------------------------------------------------


class WorkerProcs:
    """``count`` `emp worker` processes, each with ``concurrency`` slots, logging to ``log_dir``.

    The Redis URL reaches them through EMP_REDIS_URL (never argv: it may hold a password).
    Slot ids start with ``id_prefix`` (how readiness tells them from other workers of the namespace)."""

    def __init__(
        self,
        url: str,
        namespace: str,
        count: int,
        concurrency: int,
        log_dir: Path,
        capabilities: dict[str, Any] | None = None,
        id_prefix: str = "bench-",
    ) -> None:
        self.url, self.namespace, self.count, self.concurrency = url, namespace, count, concurrency
        self.log_dir = log_dir
        self.capabilities = capabilities
        self.id_prefix = id_prefix
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []

    @property
    def slots(self) -> int:
        return self.count * self.concurrency

    def start(self) -> None:
        root = str(Path(emp.__file__).resolve().parent.parent)
        env = dict(os.environ)
        env["EMP_REDIS_URL"] = self.url
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        for i in range(self.count):
            wid = f"{self.id_prefix}{i}"
            argv = [sys.executable, "-m", "emp", "--namespace", self.namespace, "worker"]
            argv += ["--services", SERVICE, "--concurrency", str(self.concurrency), "--id", wid]
            if self.capabilities is not None:
                argv += ["--capabilities", json.dumps(self.capabilities)]
            path = self.log_dir / f"{self.namespace}-{wid}.log"
            with open(path, "ab") as out:
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=out,
                    env=env,
                    start_new_session=True,
                    preexec_fn=die_with_parent,
                )
            self.procs.append(proc)
            self.logs.append(path)

    def check(self) -> None:
        """Raise BenchError when a worker process has exited (with the end of its log)."""
        for proc, path in zip(self.procs, self.logs, strict=True):
            code = proc.poll()
            if code is not None:
                raise BenchError(f"worker process exited with code {code}: {_tail(path)}")

    async def wait_ready(self, calls: Calls, timeout_s: float) -> None:
        """Until every slot is registered and has made its first (empty) claim: idle and wakeable."""
        deadline = time.monotonic() + timeout_s
        registered = 0
        while time.monotonic() < deadline:
            self.check()
            live = await calls.live_workers()
            registered = sum(1 for w in live if w.id.startswith(self.id_prefix))
            if registered >= self.slots:
                idle: Any = await calls.client.zrange(calls.keys.idle(SERVICE), 0, -1)
                if sum(1 for wid in idle if wid.startswith(self.id_prefix)) >= self.slots:
                    return
            await asyncio.sleep(0.05)
        raise BenchError(
            f"worker processes not ready after {timeout_s:g} s ({registered}/{self.slots} slots registered)"
        )

    async def stop(self, timeout_s: float) -> None:
        """SIGTERM (drain), then SIGKILL of what is still running after ``timeout_s``."""
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and any(p.poll() is None for p in self.procs):
            await asyncio.sleep(0.05)
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait()


def _tail(path: Path, lines: int = 8) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:]) or "(empty log)"


@contextlib.asynccontextmanager
async def worker_procs(
    bench: Bench,
    calls: Calls,
    count: int,
    concurrency: int,
    plan: Plan,
    log_dir: Path,
    capabilities: dict[str, Any] | None = None,
    id_prefix: str = "bench-",
) -> AsyncIterator[WorkerProcs]:
    procs = WorkerProcs(bench.url, calls.keys.namespace, count, concurrency, log_dir, capabilities, id_prefix)
    procs.start()
    try:
        await procs.wait_ready(calls, plan.worker_start_timeout_s)
        yield procs
    finally:
        await procs.stop(plan.worker_stop_timeout_s)


# -- (1) submit rate --------------------------------------------------------------------------


async def measure_submit(bench: Bench, plan: Plan, log_dir: Path) -> list[Metric]:
    tpl = job_template()
    calls = bench.fresh("submit1")
    await calls.submit(make_wires(tpl, "warm", 0, 10), MAX_PAYLOAD)
    singles = [make_wires(tpl, "s", i, i + 1) for i in range(plan.submit_single)]
    await bench.reset_stats()
    t0 = time.perf_counter()
    for wires in singles:
        await calls.submit(wires, MAX_PAYLOAD)
    single_rate = plan.submit_single / (time.perf_counter() - t0)
    single_us = await bench.fcall_usec() / plan.submit_single
    await bench.drop(calls)

    calls = bench.fresh("submitn")
    n = plan.submit_batched
    batches = [make_wires(tpl, "b", s, min(n, s + BATCH)) for s in range(0, n, BATCH)]
    await bench.reset_stats()
    t0 = time.perf_counter()
    for wires in batches:
        await calls.submit(wires, MAX_PAYLOAD)
    seq_rate = n / (time.perf_counter() - t0)
    batch_us = await bench.fcall_usec() / n
    await bench.drop(calls)

    # Two batches in flight: the client encodes the next batch while Redis runs the current one
    # (how `emp submit --count` sends them).
    calls = bench.fresh("submitp")
    batches = [make_wires(tpl, "p", s, min(n, s + BATCH)) for s in range(0, n, BATCH)]
    limiter = anyio.CapacityLimiter(SUBMIT_IN_FLIGHT)

    async def send(wires: list[dict[str, Any]]) -> None:
        async with limiter:
            await calls.submit(wires, MAX_PAYLOAD)

    t0 = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for wires in batches:
            tg.start_soon(send, wires)
    batch_rate = n / (time.perf_counter() - t0)
    await bench.drop(calls)
    return [
        Metric(
            "submit_single",
            "submit, one job a call",
            single_rate,
            "jobs/s",
            note=f"{plan.submit_single:,} sequential calls, one client; server {single_us:.0f} µs/job",
        ),
        Metric(
            "submit_batched_sequential",
            f"submit, batches of {BATCH:,}, one at a time",
            seq_rate,
            "jobs/s",
            note=f"{n:,} jobs, sequential calls, one client; server {batch_us:.1f} µs/job",
        ),
        Metric(
            "submit_batched",
            f"submit, batches of {BATCH:,}, {SUBMIT_IN_FLIGHT} in flight",
            batch_rate,
            "jobs/s",
            target=TARGET_SUBMIT_BATCHED,
            note=f"{n:,} jobs, one client, {SUBMIT_IN_FLIGHT} independent batches in flight",
        ),
    ]


# -- (2) end-to-end throughput ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class E2eRun:
    rate: float
    """jobs/s, from the first submit call to the last job completed"""
    seconds: float
    redis_cpu: float
    """redis-server CPU over the run, as a share of one core"""
    commands: dict[str, commandstats.Totals]
    """INFO commandstats over the run, the bench's own polls left out"""


async def _await_completed(
    bench: Bench, calls: Calls, n: int, timeout_s: float, t0: float, cpu0: float, check: Callable[[], None]
) -> tuple[float, float, dict[str, commandstats.Totals]]:
    """Poll until ``n`` jobs are completed; (seconds since t0, redis-server CPU share, commandstats
    with the bench's own ZCARD polls left out). ``check`` raises when a producer or worker failed."""
    done_key = calls.keys.done("completed")
    polls = 0  # the bench's own ZCARDs: not part of a job's cost
    while True:
        polls += 1
        done = int(await calls.client.zcard(done_key))
        if done >= n:
            break
        if time.perf_counter() - t0 > timeout_s:
            raise BenchError(f"only {done:,}/{n:,} jobs completed after {timeout_s:g} s")
        check()
        await asyncio.sleep(0.002)
    elapsed = time.perf_counter() - t0
    cpu = (await bench.cpu_seconds() - cpu0) / elapsed
    return elapsed, cpu, commandstats.without_calls(await bench.command_totals(), "zcard", polls)


async def _e2e_once(bench: Bench, plan: Plan, procs: int, concurrency: int, log_dir: Path) -> E2eRun:
    """Submit ``e2e_jobs`` and wait until all are completed."""
    calls = bench.fresh(f"e2e{procs}x{concurrency}")
    n = plan.e2e_jobs
    tpl = job_template()
    batches = [make_wires(tpl, "e", s, min(n, s + BATCH)) for s in range(0, n, BATCH)]
    timeout_s = max(60.0, n / 200)
    try:
        async with worker_procs(bench, calls, procs, concurrency, plan, log_dir) as workers:

            async def submit_all() -> None:
                for wires in batches:
                    await calls.submit(wires, MAX_PAYLOAD)

            def check() -> None:
                if submitter.done() and submitter.exception() is not None:
                    submitter.result()
                workers.check()

            await bench.reset_stats()
            cpu0 = await bench.cpu_seconds()
            t0 = time.perf_counter()
            submitter = asyncio.create_task(submit_all())
            try:
                elapsed, cpu, totals = await _await_completed(bench, calls, n, timeout_s, t0, cpu0, check)
                await submitter
            finally:
                if not submitter.done():
                    submitter.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await submitter
            failed = int(await calls.client.zcard(calls.keys.done("failed")))
            if failed:
                raise BenchError(f"{failed} no-op jobs failed (see the worker logs in {log_dir})")
    finally:
        await bench.drop(calls)
    return E2eRun(n / elapsed, elapsed, cpu, totals)


async def _started_at_ms(calls: Calls, ids: list[str]) -> list[int]:
    """Every job's started_at (server ms), read in pipelined pages."""
    out: list[int] = []
    page = 5_000
    for i in range(0, len(ids), page):
        async with calls.client.pipeline(transaction=False) as pipe:
            for job_id in ids[i : i + page]:
                pipe.hget(calls.keys.job(job_id), "started_at")
            got = await pipe.execute()
        out.extend(int(v) for v in got if v)
    return out


async def _e2e_preloaded(bench: Bench, plan: Plan, procs: int, concurrency: int, log_dir: Path) -> E2eRun:
    """The peer harness's method: fill the queue, then start the workers; the rate is jobs started
    over the span from the first job started to the last (``started_at``, server ms), so neither
    submitting nor the workers' start-up is counted (commandstats and CPU cover the whole run)."""
    calls = bench.fresh(f"e2es{procs}x{concurrency}")
    n = plan.e2e_jobs
    tpl = job_template()
    ids: list[str] = []
    try:
        for s in range(0, n, BATCH):
            wires = make_wires(tpl, "p", s, min(n, s + BATCH))
            ids.extend(w["id"] for w in wires)
            await calls.submit(wires, MAX_PAYLOAD)
        timeout_s = plan.worker_start_timeout_s + max(60.0, n / 200)
        workers = WorkerProcs(bench.url, calls.keys.namespace, procs, concurrency, log_dir)
        await bench.reset_stats()
        cpu0 = await bench.cpu_seconds()
        t0 = time.perf_counter()
        workers.start()
        try:
            _, cpu, totals = await _await_completed(bench, calls, n, timeout_s, t0, cpu0, workers.check)
        finally:
            await workers.stop(plan.worker_stop_timeout_s)
        starts = await _started_at_ms(calls, ids)
        if len(starts) < n:
            raise BenchError(f"{n - len(starts):,} completed jobs have no started_at")
        span_s = max(max(starts) - min(starts), 1) / 1000
        failed = int(await calls.client.zcard(calls.keys.done("failed")))
        if failed:
            raise BenchError(f"{failed} no-op jobs failed (see the worker logs in {log_dir})")
    finally:
        await bench.drop(calls)
    return E2eRun((n - 1) / span_s if n > 1 else float(n), span_s, cpu, totals)


def _peer_ratio_metrics(plan: Plan, steady: dict[tuple[int, int], float]) -> list[Metric]:
    """emp's steady rates over BullMQ's of the peer harness run given with --peers."""
    if plan.peers is None:
        return []
    out: list[Metric] = []
    when = peers.started(plan.peers)
    pairs = (
        (plan.e2e_concurrency, peers.BULLMQ_C10, "concurrency 10", TARGET_VS_BULLMQ_CONCURRENT),
        (1, peers.BULLMQ_C1, "concurrency 1", TARGET_VS_BULLMQ_ONE_SLOT),
    )
    for conc, lib, how, target in pairs:
        ours = steady.get((2, conc))
        if ours is None:
            continue
        try:
            theirs = peers.steady(plan.peers, lib, "e2e2")
        except peers.PeersFileError as exc:
            raise BenchError(f"--peers: {exc}") from None
        slots = "1 slot" if conc == 1 else f"{conc} slots"
        out.append(
            Metric(
                f"vs_{lib.replace('-', '_')}",
                f"2 procs × {slots} / BullMQ {how}",
                ours / theirs.steady,
                "×",
                target=target,
                note=f"emp {ours:,.0f} jobs/s, BullMQ {theirs.steady:,.0f} jobs/s (peer harness e2e2 steady, "
                f"median of {theirs.reps}{', run ' + when if when else ''}); both: queue filled first, "
                "first job started to last",
            )
        )
    return out


async def measure_e2e(bench: Bench, plan: Plan, log_dir: Path) -> list[Metric]:
    out: list[Metric] = []
    runs: list[E2eRun] = []
    for procs in plan.e2e_procs:
        for conc in (1, plan.e2e_concurrency) if plan.e2e_concurrency > 1 else (1,):
            bench.log(f"  e2e: {procs} worker process(es) x {conc} slot(s), {plan.e2e_jobs:,} jobs")
            run = await _e2e_once(bench, plan, procs, conc, log_dir)
            runs.append(run)
            key = f"e2e_{procs}p_{conc}c"
            bench.redis_commands[key] = commandstats.per_job(run.commands, plan.e2e_jobs)
            function_us = commandstats.function_usec(run.commands) / plan.e2e_jobs
            target = None
            if procs == 2:
                target = TARGET_E2E_ONE_SLOT if conc == 1 else TARGET_E2E_CONCURRENT
            slots = "1 slot" if conc == 1 else f"{conc} slots"
            out.append(
                Metric(
                    key,
                    f"end-to-end, {procs} worker proc{'s' if procs > 1 else ''} × {slots}",
                    run.rate,
                    "jobs/s",
                    target=target,
                    note=f"{plan.e2e_jobs:,} no-op jobs submit→claim→complete in {run.seconds:.2f} s; "
                    f"redis-server busy {run.redis_cpu:.0%} of a core; Functions {function_us:.0f} µs/job",
                )
            )
    steady: dict[tuple[int, int], float] = {}
    for procs in plan.e2e_procs:
        for conc in (1, plan.e2e_concurrency) if plan.e2e_concurrency > 1 else (1,):
            bench.log(f"  e2e, queue filled first: {procs} worker process(es) x {conc} slot(s)")
            run = await _e2e_preloaded(bench, plan, procs, conc, log_dir)
            steady[(procs, conc)] = run.rate
            slots = "1 slot" if conc == 1 else f"{conc} slots"
            out.append(
                Metric(
                    f"e2e_{procs}p_{conc}c_steady",
                    f"end-to-end, queue filled first, {procs} proc{'s' if procs > 1 else ''} × {slots}",
                    run.rate,
                    "jobs/s",
                    note=f"the peer harness's method: {plan.e2e_jobs:,} jobs queued before the workers start, "
                    f"rate over {run.seconds:.2f} s from the first job started to the last; "
                    f"redis-server busy {run.redis_cpu:.0%} of a core",
                )
            )
    out.extend(_peer_ratio_metrics(plan, steady))
    jobs = plan.e2e_jobs * len(runs)
    every = commandstats.add(r.commands for r in runs)
    bench.redis_commands["e2e"] = commandstats.per_job(every, jobs)
    lua_us = next((r.us_per_job for r in bench.redis_commands["e2e"] if r.command == "lua"), 0.0)
    out.append(
        Metric(
            "redis_us_per_job",
            "Redis time per processed job (Functions)",
            commandstats.function_usec(every) / jobs,
            "µs",
            TARGET_REDIS_US_PER_JOB,
            "lower",
            note=f"FCALL µs (INFO commandstats) over the {len(runs)} end-to-end runs / {jobs:,} jobs: "
            f"submit + claim + complete + all the workers call; {lua_us:.0f} µs/job of it outside the "
            "commands the Functions run (Lua)",
        )
    )
    return out


# -- (3) pickup latency -----------------------------------------------------------------------


async def _pickup_latencies(
    bench: Bench, calls: Calls, workers: WorkerProcs, tpl: dict[str, Any], n: int, gap_s: float, wait_s: float
) -> list[float]:
    """Submit ``n`` jobs one at a time ``gap_s`` apart; ms from each submit call to its job_started
    (or job_assigned) event read from the stream. Jobs not seen ``wait_s`` after the last submit
    are left out (the caller decides how many may be missing)."""
    reader = connect(bench.url, max_connections=2)
    sent: dict[str, float] = {}
    seen: dict[str, float] = {}
    try:
        last: Any = await reader.xrevrange(calls.keys.events, "+", "-", count=1)
        last_id: str = str(last[0][0]) if last else "0-0"

        async def read_events() -> None:
            nonlocal last_id
            while True:
                reply: Any = await reader.xread({calls.keys.events: last_id}, count=200, block=1000)
                now = time.perf_counter()
                for _stream, entries in reply or []:
                    for eid, fields in entries:
                        last_id = eid
                        if fields.get("type") in ("job_assigned", "job_started"):
                            seen.setdefault(fields.get("job", ""), now)

        task = asyncio.create_task(read_events())
        try:
            await asyncio.sleep(0.1)  # the reader is blocked in XREAD before the first submit
            for i in range(n):
                wires = make_wires(tpl, "p", i, i + 1)
                sent[wires[0]["id"]] = time.perf_counter()
                await calls.submit(wires, MAX_PAYLOAD)
                await asyncio.sleep(gap_s)
            deadline = time.monotonic() + wait_s
            while len(seen.keys() & sent.keys()) < n and time.monotonic() < deadline:
                workers.check()
                await asyncio.sleep(0.01)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    finally:
        await reader.aclose()
    return [(seen[j] - t) * 1000 for j, t in sent.items() if j in seen]


def _pickup_metrics(key: str, where: str, lat_ms: list[float], n: int, wait_s: float, note: str) -> list[Metric]:
    missing = n - len(lat_ms)
    if missing > max(1, n // 100):
        raise BenchError(f"{missing}/{n} jobs were never picked up within {wait_s:g} s")
    if missing:
        note += f" ({missing} not seen)"
    return [
        Metric(
            f"{key}_p50_ms",
            f"pickup latency p50{where}",
            percentile(lat_ms, 50),
            "ms",
            TARGET_PICKUP_P50_MS,
            "lower",
            note=note,
        ),
        Metric(
            f"{key}_p99_ms",
            f"pickup latency p99{where}",
            percentile(lat_ms, 99),
            "ms",
            TARGET_PICKUP_P99_MS,
            "lower",
            note=f"max {max(lat_ms):.2f} ms",
        ),
    ]


async def measure_pickup(bench: Bench, plan: Plan, log_dir: Path) -> list[Metric]:
    calls = bench.fresh("pickup")
    n, wait_s = plan.pickup_jobs, 5.0
    try:
        async with worker_procs(bench, calls, 1, 1, plan, log_dir) as workers:
            lat_ms = await _pickup_latencies(bench, calls, workers, job_template(), n, plan.pickup_gap_s, wait_s)
    finally:
        await bench.drop(calls)
    gap = f"{plan.pickup_gap_s * 1000:g} ms"
    note = f"{len(lat_ms)} jobs {gap} apart, 1 idle worker; submit call → job_started read"
    return _pickup_metrics("pickup", "", lat_ms, n, wait_s, note)


async def measure_mixed_pickup(bench: Bench, plan: Plan, log_dir: Path) -> list[Metric]:
    """Pickup in a mixed fleet (:mod:`emp.bench.mixed_fleet`): 45 idle workers of 9 kinds that cannot
    run the jobs went idle first; then one `emp worker` process of the one kind that can (5 slots)."""
    calls = bench.fresh("mixed")
    n = plan.mixed_pickup_jobs
    wait_s = 2 * defaults.IDLE_POLL_S + 5  # a job nobody is woken for waits for the idle poll
    kinds = mixed_fleet.KINDS
    matching = kinds - 1
    blocking = connect(bench.url, max_connections=2)
    fleet = mixed_fleet.IdleFleet(
        calls, blocking, SERVICE, range(matching), mixed_fleet.PER_KIND, WORKER_TTL_MS, LEASE_MS
    )
    tpl = job_template(requirements=mixed_fleet.JOB_REQUIREMENTS)
    caps = mixed_fleet.kind_capabilities(matching, SERVICE)
    try:
        async with (
            mixed_fleet.idle_fleet(fleet),
            worker_procs(bench, calls, 1, mixed_fleet.PER_KIND, plan, log_dir, caps, "bench-match-") as workers,
        ):
            lat_ms = await _pickup_latencies(bench, calls, workers, tpl, n, plan.pickup_gap_s, wait_s)
    finally:
        await blocking.aclose()
        await bench.drop(calls)
    others = len(fleet.worker_ids)
    note = (
        f"{len(lat_ms)} jobs {plan.pickup_gap_s * 1000:g} ms apart; {others + mixed_fleet.PER_KIND} idle workers of "
        f"{kinds} kinds, only the {mixed_fleet.PER_KIND} of the last kind to register can run them"
    )
    return _pickup_metrics("pickup_mixed", ", mixed fleet", lat_ms, n, wait_s, note)


# -- (4) (5) claim cost -----------------------------------------------------------------------


CLAIM_STRETCHES = 5
"""Claim costs are measured in this many stretches and the cheapest stretch is reported: other
processes on the machine can only add time, so the minimum is the least disturbed figure."""


@dataclass(frozen=True, slots=True)
class ClaimCost:
    claim_us: float
    """Server time of one emp_claim: INFO commandstats usec_per_call over a stretch of claims
    alone (µs), the cheapest of CLAIM_STRETCHES stretches."""
    complete_us: float
    """The same for the emp_complete calls that finish those jobs afterwards."""
    claim_rtt_us: float
    """Client round trip of one claim call, median over every claim (µs)."""
    cycles: int


async def claim_cost(bench: Bench, calls: Calls, worker_id: str, cycles: int) -> ClaimCost:
    """Claim ``cycles`` jobs one after the other, then complete them, in CLAIM_STRETCHES stretches.

    In each stretch the claims and the completes run apart, so that FCALL's usec_per_call (INFO
    commandstats, reset before each) is the cost of one kind of call alone. SLOWLOG is not used
    here: at a zero threshold Redis also logs every command a Function runs, which inflates the
    Function's own time. The held jobs make the lease set a stretch deep, as a busy fleet's is."""
    for i in range(min(20, cycles)):  # warm the match cache and the connection
        got = await calls.claim(worker_id, f"warm{i}", LEASE_MS)
        if isinstance(got, ClaimedJob):
            await calls.complete(got.id, got.attempt, worker_id, "")
    rtt: list[float] = []
    claim_us: list[float] = []
    complete_us: list[float] = []
    per_stretch = max(1, cycles // CLAIM_STRETCHES)
    done = 0
    while done < cycles:
        k = min(per_stretch, cycles - done)
        held: list[ClaimedJob] = []
        await bench.reset_stats()
        for i in range(done, done + k):
            t0 = time.perf_counter()
            got = await calls.claim(worker_id, f"c{i}", LEASE_MS)
            rtt.append((time.perf_counter() - t0) * 1e6)
            if not isinstance(got, ClaimedJob):
                raise BenchError(f"claim {i + 1}/{cycles} found no job ({got})")
            held.append(got)
        n_claims, per_claim = await bench.fcall_stats()
        if n_claims < k:
            raise BenchError(f"INFO commandstats counted {n_claims} FCALLs for {k} claims")
        await bench.reset_stats()
        for job in held:
            await calls.complete(job.id, job.attempt, worker_id, "")
        _n, per_complete = await bench.fcall_stats()
        claim_us.append(per_claim)
        complete_us.append(per_complete)
        done += k
    return ClaimCost(
        claim_us=min(claim_us), complete_us=min(complete_us), claim_rtt_us=statistics.median(rtt), cycles=cycles
    )


def _short(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1_000 and n % 1_000 == 0:
        return f"{n // 1_000}k"
    return str(n)


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("inf")


async def measure_depth(bench: Bench, plan: Plan, log_dir: Path) -> list[Metric]:
    tpl = job_template()
    out: list[Metric] = []
    costs: dict[int, ClaimCost] = {}
    for depth in plan.depths:
        calls = bench.fresh(f"depth{_short(depth)}")
        bench.log(f"  depth: filling {depth:,} pending jobs")
        await fill(calls, tpl, depth + plan.claim_cycles + 20, "d", log=bench.log)
        await register_bench_worker(calls, "bench-claimer")
        cost = costs[depth] = await claim_cost(bench, calls, "bench-claimer", plan.claim_cycles)
        await bench.drop(calls)
        out.append(
            Metric(
                f"claim_us_depth_{_short(depth)}",
                f"claim, {_short(depth)} pending: server",
                cost.claim_us,
                "µs",
                better="lower",
                note=f"FCALL usec_per_call, best of {CLAIM_STRETCHES} runs of {cost.cycles // CLAIM_STRETCHES:,} "
                f"claims; complete {cost.complete_us:.0f} µs",
            )
        )
        out.append(
            Metric(
                f"claim_rtt_us_depth_{_short(depth)}",
                f"claim, {_short(depth)} pending: round trip",
                cost.claim_rtt_us,
                "µs",
                better="lower",
                note="client side, median",
            )
        )
    lo, hi = min(costs), max(costs)
    out.append(
        Metric(
            "claim_depth_ratio",
            f"claim cost {_short(hi)} / {_short(lo)} pending",
            _ratio(costs[hi].claim_us, costs[lo].claim_us),
            "x",
            TARGET_DEPTH_RATIO,
            "lower",
            note=f"server; round trip ratio {_ratio(costs[hi].claim_rtt_us, costs[lo].claim_rtt_us):.2f}×",
        )
    )
    return out


async def _sigs_once(bench: Bench, plan: Plan, n_sigs: int, worst: bool) -> ClaimCost:
    """Claim cost with jobs over ``n_sigs`` signatures (hardware.gpu_memory_gb >= k, k = 1..n).

    worst=False: the worker (200 GB) matches every signature. worst=True: the worker (1 GB) matches
    only k=1, whose jobs have the lowest priority, so every claim walks past every other head."""
    calls = bench.fresh(f"sigs{n_sigs}{'w' if worst else 'a'}")
    cycles = plan.claim_cycles
    templates = [job_template(requirements={"hardware.gpu_memory_gb": k}) for k in range(1, n_sigs + 1)]
    if worst:
        low = job_template(requirements={"hardware.gpu_memory_gb": 1}, priority=0)
        await fill(calls, low, cycles + 40, "w")
        for k, tpl in enumerate(templates[1:], start=2):
            await fill(calls, tpl, 5, f"o{k}-")
        gpu = 1
    else:
        total = 2 * cycles + 40 + n_sigs
        await fill(calls, lambda i: templates[i % n_sigs], total, "a")
        gpu = 200
    await register_bench_worker(calls, "bench-claimer", {"hardware": {"gpu_memory_gb": gpu}})
    try:
        return await claim_cost(bench, calls, "bench-claimer", cycles)
    finally:
        await bench.drop(calls)


async def measure_sigs(bench: Bench, plan: Plan, log_dir: Path) -> list[Metric]:
    out: list[Metric] = []
    best: dict[int, ClaimCost] = {}
    worst: dict[int, ClaimCost] = {}
    for n_sigs in plan.sig_counts:
        bench.log(f"  sigs: {n_sigs} signature(s)")
        best[n_sigs] = c = await _sigs_once(bench, plan, n_sigs, worst=False)
        out.append(
            Metric(
                f"claim_us_sigs_{n_sigs}",
                f"claim, {n_sigs} signature{'s' if n_sigs > 1 else ''}, worker matches all",
                c.claim_us,
                "µs",
                better="lower",
                note=f"server; round trip {c.claim_rtt_us:.0f} µs",
            )
        )
        if n_sigs > 1:
            worst[n_sigs] = w = await _sigs_once(bench, plan, n_sigs, worst=True)
            out.append(
                Metric(
                    f"claim_us_sigs_{n_sigs}_worst",
                    f"claim, {n_sigs} signatures, worker matches only the last",
                    w.claim_us,
                    "µs",
                    better="lower",
                    note=f"server; round trip {w.claim_rtt_us:.0f} µs",
                )
            )
    lo, hi = min(best), max(best)
    if hi != lo:
        out.append(
            Metric(
                "claim_sigs_ratio",
                f"claim cost {hi} / {lo} signatures",
                _ratio(best[hi].claim_us, best[lo].claim_us),
                "x",
                TARGET_SIGS_RATIO,
                "lower",
                note="worker matches all; jobs submitted in batches, so the heads tie on the ms",
            )
        )
        if hi in worst:
            out.append(
                Metric(
                    "claim_sigs_ratio_worst",
                    f"claim cost {hi} / {lo} signatures, worst case",
                    _ratio(worst[hi].claim_us, best[lo].claim_us),
                    "x",
                    note=f"the worker skips {hi - 1} better-scored signatures on every claim",
                )
            )
    return out


# -- (6) slowest call -------------------------------------------------------------------------


class _Mix:
    """A mixed load of every Function against a deep namespace (for the slowlog measurement)."""

    def __init__(self, calls: Calls, n_jobs: int, n_sigs: int) -> None:
        self.calls = calls
        self.n_jobs = n_jobs
        self.n_sigs = n_sigs
        self.cancelled = 0
        self.submitted = 0
        self.round = 0
        self.tpl = job_template()

    async def setup(self) -> None:
        await register_bench_worker(self.calls, "mix-big", {"hardware": {"gpu_memory_gb": 200}})
        await register_bench_worker(self.calls, "mix-small", {"hardware": {"gpu_memory_gb": 2}})
        await register_bench_worker(self.calls, "mix-wf", {"hardware": {"gpu_memory_gb": 200}, "workflow_id": "wf-7"})

    async def _claim_finish(self, wid: str, how: str) -> None:
        c = self.calls
        got = await c.claim(wid, uuid.uuid4().hex, LEASE_MS)
        if not isinstance(got, ClaimedJob):
            return
        if how == "complete":
            await c.progress(got.id, got.attempt, wid, 50.0, "half")
            await c.complete(got.id, got.attempt, wid, '{"ok":true}')
        elif how == "heartbeat":
            await c.heartbeat(wid, LEASE_MS, WORKER_TTL_MS, [(got.id, got.attempt)])
            await c.complete(got.id, got.attempt, wid, "")
        else:
            await c.fail(got.id, got.attempt, wid, how, f"bench {how}", 0.5)

    async def one_round(self) -> None:
        c = self.calls
        self.round += 1
        for _ in range(4):
            await self._claim_finish("mix-big", "complete")
        await self._claim_finish("mix-small", "heartbeat")
        await self._claim_finish("mix-wf", "complete")
        await self._claim_finish("mix-big", "transient")
        await self._claim_finish("mix-big", "malformed")
        victim = f"m{(self.round * 7919) % self.n_jobs}"
        with contextlib.suppress(Exception):
            await c.cancel(victim, "bench")
        await c.get_job(f"m{(self.round * 104729) % self.n_jobs}")
        self.submitted += 1
        await c.submit([{**self.tpl, "id": f"mx{self.round}"}], MAX_PAYLOAD)
        await c.maintain(defaults.MAINTENANCE_PAGE, defaults.MAX_LOST_LEASES)
        await c.cleanup(defaults.MAINTENANCE_PAGE)
        if self.round % 5 == 0:
            await c.snapshot()
            await c.list_jobs("pending", SERVICE, 50)
            await c.list_jobs("completed", "", 50)
            await c.signatures()
            await c.live_workers()


def _mix_template(n_sigs: int) -> Callable[[int], dict[str, Any]]:
    plain = [job_template(requirements={"hardware.gpu_memory_gb": k}) for k in range(1, n_sigs + 1)]
    wf = job_template(workflow_id="wf-7", customer_id="cust-7")
    cust = [job_template(customer_id=f"cust-{k}") for k in range(10)]

    def make(i: int) -> dict[str, Any]:
        if i % 50 == 0:
            return wf
        if i % 7 == 0:
            return cust[i % 10]
        return plain[i % n_sigs]

    return make


async def measure_slowest(bench: Bench, plan: Plan, log_dir: Path) -> list[Metric]:
    calls = bench.fresh("slow")
    n = plan.slow_jobs
    bench.log(f"  slowest: filling {n:,} pending jobs")
    try:
        await fill(calls, _mix_template(10), n, "m", log=bench.log)
        mix = _Mix(calls, n, 10)
        await mix.setup()
        passes: dict[int, list[dict[str, Any]]] = {}
        for threshold in (1000, 200):
            async with bench.slowlog(threshold, 10_000) as entries:
                for _ in range(plan.slow_rounds):
                    await mix.one_round()
            passes[threshold] = list(entries)
    finally:
        await bench.drop(calls)
    out: list[Metric] = []
    for threshold, entries in passes.items():
        key = "slowest_call_ms" if threshold == 1000 else f"slowest_call_ms_{threshold}us"
        label = f"slowest Function call, {_short(n)} pending"
        if threshold != 1000:
            label += f" (pass 2, logged ≥ {threshold} µs)"
        if entries:
            worst: dict[str, tuple[int, int]] = {}  # function -> (max µs, calls logged)
            for e in entries:
                top, count = worst.get(e["function"], (0, 0))
                worst[e["function"]] = (max(top, int(e["duration_us"])), count + 1)
            ranked = sorted(worst.items(), key=lambda kv: -kv[1][0])
            value, bound = ranked[0][1][0] / 1000, "exact"
            shown = ", ".join(f"{fn} {us / 1000:.2f} ms ×{count}" for fn, (us, count) in ranked[:3])
            note = f"{shown} (max, calls ≥ {threshold} µs) in {plan.slow_rounds} mixed rounds"
        else:
            value, bound = threshold / 1000, "upper"
            note = f"no call over {threshold} µs in {plan.slow_rounds} mixed rounds"
        out.append(
            Metric(
                key,
                label,
                value,
                "ms",
                TARGET_SLOWEST_MS if threshold == 1000 else None,
                "lower",
                bound=bound,  # type: ignore[arg-type]
                note=note,
            )
        )
    return out


# -- (7) memory per pending job ---------------------------------------------------------------


async def measure_memory(bench: Bench, plan: Plan, log_dir: Path) -> list[Metric]:
    calls = bench.fresh("mem")
    n = plan.memory_jobs
    pad = plan.memory_payload_bytes - len('{"steps":0,"pad":""}')
    payload = {"steps": 0, "pad": "x" * max(0, pad)}
    tpl = job_template(payload=payload)
    size = len(tpl["payload"])
    ids = [uuid.uuid4().hex for _ in range(n)]
    try:
        before = await bench.used_memory()
        await fill(calls, lambda i: {**tpl, "id": ids[i]}, n, "", log=bench.log)
        after = await bench.used_memory()
        stream = await bench.memory_usage(calls.keys.events)
    finally:
        await bench.drop(calls)
    per_job = (after - before) / n
    return [
        Metric(
            "memory_per_job_b",
            f"memory per pending job, {size:,} B payload",
            per_job,
            "B",
            TARGET_MEMORY_B,
            "lower",
            note=f"used_memory over {n:,} jobs; {stream / n:.0f} B/job of it is the event stream",
        )
    ]


# -- running ----------------------------------------------------------------------------------

Measure = Callable[[Bench, Plan, Path], Awaitable[list[Metric]]]


async def measure_comfyui(bench: Bench, plan: Plan, log_dir: Path) -> list[Metric]:
    from emp.bench import comfyui

    calls = bench.fresh("comfyui")
    try:
        return await comfyui.measure(bench.url, calls.keys.namespace, plan.comfyui_url, plan.comfyui_jobs, log_dir)
    finally:
        await bench.drop(calls)


async def measure_cluster(bench: Bench, plan: Plan, log_dir: Path) -> list[Metric]:
    """Two namespaces on one master vs on two, on a local cluster of its own (emp/bench/cluster.py)."""
    from emp.bench import cluster

    stem = f"{bench.ns_prefix}-bench-{bench.run_id}"
    return await cluster.measure(max(500, plan.e2e_jobs // 2), plan.e2e_concurrency, log_dir, bench.log, stem)


async def measure_api(bench: Bench, plan: Plan, log_dir: Path) -> list[Metric]:
    """The coordinator's figures: POST /api/jobs, and monitor sockets held under a busy fleet's events
    (emp/bench/api_bench.py)."""
    from emp.bench import api_bench

    calls = bench.fresh("api")
    sizes = api_bench.QUICK_SIZES if plan.api_quick else api_bench.ApiSizes()
    try:
        return await api_bench.measure(bench.url, calls.keys.namespace, sizes, log_dir, bench.log)
    finally:
        await bench.drop(calls)


async def measure_watch(bench: Bench, plan: Plan, log_dir: Path) -> list[Metric]:
    """What `emp watch` costs at fleet scale (emp/bench/watch_bench.py): a frame's render time and the
    Redis load one watcher adds (100 machines, 400 busy workers, 100,000 pending; --quick: a tenth)."""
    from emp.bench import watch_bench

    calls = bench.fresh("watch")
    scale = plan.watch_scale
    try:
        got = await watch_bench.run(
            bench.url,
            machines=100 // scale,
            workers=400 // scale,
            pending=100_000 // scale,
            frames=200 // scale,
            watch_s=10.0 / scale,
            namespace=calls.keys.namespace,
        )
    finally:
        await bench.drop(calls)
    fleet = f"{got['machines']} machines, {got['workers']} busy workers, {got['pending']:,} pending"
    return [
        Metric("watch_render_p50_ms", f"watch: render a {got['frame']} frame, p50", got["render_p50_ms"], "ms",
               better="lower", note=fleet),
        Metric("watch_render_p99_ms", f"watch: render a {got['frame']} frame, p99", got["render_p99_ms"], "ms",
               better="lower", note=fleet),
        Metric("watch_redis_calls_per_s", "watch: Redis calls one watcher sends", got["redis_calls_per_s"], "calls/s",
               better="lower", note=f"over {got['watch_s']:g} s (event fold + 1 s polls)"),
        Metric("watch_redis_us_per_s", "watch: Redis server time one watcher adds", got["redis_us_per_s"], "µs/s",
               better="lower", note="INFO commandstats of the watcher's own commands"),
    ]  # fmt: skip


MEASURES: dict[str, Measure] = {
    "submit": measure_submit,
    "e2e": measure_e2e,
    "pickup": measure_pickup,
    "mixed_pickup": measure_mixed_pickup,
    "depth": measure_depth,
    "sigs": measure_sigs,
    "slowest": measure_slowest,
    "memory": measure_memory,
    "comfyui": measure_comfyui,
    "api": measure_api,
    "watch": measure_watch,
    "cluster": measure_cluster,
}


async def run_bench_async(url: str, own_server: bool, plan: Plan, ns_prefix: str, log: Log) -> BenchResult:
    t0 = time.perf_counter()
    result = BenchResult(params=plan.params() | {"redis": "embedded" if own_server else "given"})
    bench = Bench(url, own_server, ns_prefix, log)
    log_dir = Path(tempfile.mkdtemp(prefix="emp-bench-"))
    keep_logs = False
    try:
        await bench.setup()
        for name in plan.only:
            log(f"bench: {name}")
            t1 = time.perf_counter()
            try:
                result.metrics.extend(await MEASURES[name](bench, plan, log_dir))
            except Exception as exc:  # one failed measurement must not hide the others
                keep_logs = any(log_dir.iterdir())
                result.errors[name] = _why(exc)
                for ns in list(bench.namespaces):
                    with contextlib.suppress(Exception):
                        await bench.drop(ns)
            log(f"bench: {name} done in {time.perf_counter() - t1:.1f} s")
    finally:
        result.redis_commands.update(bench.redis_commands)
        await bench.close()
        if keep_logs:
            log(f"bench: worker logs kept in {log_dir}")
        else:
            for p in log_dir.iterdir():
                p.unlink()
            log_dir.rmdir()
    return replace(result, duration_s=time.perf_counter() - t0)


def _why(exc: BaseException) -> str:
    """What a failed measurement reports: the first real error inside task-group wrappers."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return str(exc) if isinstance(exc, BenchError) else f"{type(exc).__name__}: {exc}"


@contextlib.contextmanager
def bench_redis(url: str | None, log: Log | None = None) -> Iterator[tuple[str, bool]]:
    """(url, own_server): ``url`` as given, or a private redis-server for the block's duration."""
    if url is not None:
        yield url, False
        return
    server = EmbeddedRedis(None, persist=False).start()
    try:
        if log is not None:
            log(f"bench: private redis-server {'.'.join(map(str, server.version or ()))} at {server.url}")
        yield server.url, True
    finally:
        server.stop()


def run_bench(url: str | None, plan: Plan, ns_prefix: str = defaults.NAMESPACE, log: Log | None = None) -> BenchResult:
    """Run the plan against ``url``, or against a private redis-server when ``url`` is None."""
    say: Log = log or (lambda _msg: None)
    with bench_redis(url, say) as (bench_url, own):
        return asyncio.run(run_bench_async(bench_url, own, plan, ns_prefix, say))
