"""`emp bench scale` (reliability.md T16): the upkeep sweeps on a big keyspace never block Redis.

It builds, through the real Functions (batched submits of MAX_BATCH, claims, group commits of
``emp_complete_many`` that claim the next job in the same call), one namespace holding:

- ``finished`` completed jobs; the older half ended before a cutoff (server time) that the sweep's
  retention points at, the rest after it: the cleanup must delete the old ones and keep the others;
- ``active`` jobs in progress: most held by a live worker with a long lease, ``orphaned`` of them by
  a worker that "died" (short lease, short registration): the maintain sweep must requeue each once;
- ``unworkable`` pending jobs spread over several requirements signatures that no live worker meets:
  the unworkable detection must mark them all.

Then it runs the coordinator's upkeep pass (:func:`emp.coordinator.upkeep.run_upkeep_pass`: maintain,
machines_offline, cleanup with the retention, schedules, unworkable detection, signature retirement)
back to back, with no pause between passes (harder than the coordinator's 1 s interval), until a pass
finds nothing left to do, while a separate process PINGs Redis every 2 ms (:mod:`emp.bench.ping_probe`).
SLOWLOG (threshold below the 50 ms limit, so the slowest calls are named) and LATENCY LATEST are read
at the end. Pass criteria (:meth:`ScaleResult.failures`): max PING <= 50 ms, p99 <= 10 ms, no SLOWLOG
entry >= 50 ms, no BUSY reply, and the sweep's work exactly what the keyspace called for.

The server is always a private redis-server (the run changes its slowlog settings and writes GBs):
the full size holds about 2.5 GB (a finished job's event stream alone takes ~4.7 KB on Redis 7.0).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import emp
from emp import defaults
from emp._process import die_with_parent
from emp.bench.runner import SERVICE, BenchError, fill, job_template
from emp.coordinator.upkeep import UpkeepReport, run_upkeep_pass
from emp.redis import library
from emp.redis.calls import Calls, ClaimedJob, Completion, NextClaim, NotRegistered, UpkeepCalls
from emp.redis.client import RedisClient, connect
from emp.redis.embedded import EmbeddedRedis

Log = Callable[[str], None]

MAX_PING_MS = 50.0
P99_PING_MS = 10.0
MAX_CALL_MS = 50.0
SLOWLOG_THRESHOLD_US = 10_000
"""Below the 50 ms limit on purpose: the slowest calls are then named even when none fails."""
PROBE_INTERVAL_MS = 2.0

LIVE_WORKER = "scale-fleet"
DEAD_WORKER = "scale-dead"
LONG_LEASE_MS = 3_600_000
ORPHAN_LEASE_MS = 4_000
"""The dead worker's leases (and registration): they lapse a few seconds into the sweep."""
CUTOFF_GAP_MS = 2_000
"""Server time between the last old job's end and the first recent one's: a pass that takes less than
this cannot move the retention cutoff past a recent job (the cleanup reads the clock per call)."""
CHAIN = 1_000
"""Jobs a group commit completes (and claims next) per call while building."""
CHAINS = 2
CLAIMS_IN_FLIGHT = 48
UNWORKABLE_SIGNATURES = 10
IMPOSSIBLE_GPU_GB = 100_000
SAMPLE = 1_000
"""Job records checked one by one after the sweep (old ones gone, recent ones kept)."""


@dataclass(frozen=True, slots=True)
class ScaleSize:
    finished: int = 500_000
    active: int = 50_000
    orphaned: int = 10_000
    """Of ``active``: held by the worker that dies."""
    unworkable: int = 10_000

    def __post_init__(self) -> None:
        if min(self.finished, self.active, self.orphaned, self.unworkable) < 0 or self.orphaned > self.active:
            raise ValueError("sizes must be >= 0 and orphaned <= active")

    @property
    def old(self) -> int:
        return self.finished // 2

    @property
    def recent(self) -> int:
        return self.finished - self.old


FULL = ScaleSize()


@dataclass(slots=True)
class ScaleResult:
    size: ScaleSize
    build_s: dict[str, float] = field(default_factory=dict)
    """Seconds per building phase (and ``total``)."""
    used_memory_mb: float = 0.0
    sweep_s: float = 0.0
    passes: int = 0
    slowest_pass_ms: float = 0.0
    work: dict[str, int] = field(default_factory=dict)
    """What the passes did, summed (UpkeepReport.counts)."""
    probe: dict[str, Any] = field(default_factory=dict)
    slowlog: list[dict[str, Any]] = field(default_factory=list)
    """SLOWLOG entries (>= SLOWLOG_THRESHOLD_US) during the sweep: command, duration_ms."""
    latency_latest: list[list[Any]] = field(default_factory=list)
    busy_errors: int = 0
    sweep_errors: list[str] = field(default_factory=list)
    after: dict[str, int] = field(default_factory=dict)
    """The keyspace after the sweep: counts per status, old/recent index entries, sampled records."""

    @property
    def slowest_call_ms(self) -> float:
        return max((float(e["duration_ms"]) for e in self.slowlog), default=0.0)

    def failures(self) -> list[str]:
        """Every pass criterion that was missed (empty: T16 holds)."""
        out: list[str] = []
        max_ms, p99_ms = self.probe.get("max_ms"), self.probe.get("p99_ms")
        if not self.probe.get("samples"):
            out.append("the probe took no samples")
        elif max_ms is None or max_ms > MAX_PING_MS:
            out.append(f"max PING {max_ms} ms > {MAX_PING_MS:g} ms")
        if p99_ms is not None and p99_ms > P99_PING_MS:
            out.append(f"p99 PING {p99_ms} ms > {P99_PING_MS:g} ms")
        if slow := [e for e in self.slowlog if e["duration_ms"] >= MAX_CALL_MS]:
            out.append(f"{len(slow)} SLOWLOG entries >= {MAX_CALL_MS:g} ms: {slow[:3]}")
        busy = self.busy_errors + int(self.probe.get("busy") or 0)
        if busy:
            out.append(f"{busy} BUSY replies")
        if self.sweep_errors:
            out.append(f"sweep errors: {self.sweep_errors[:3]}")
        s, a = self.size, self.after
        expected = {
            "old_listed": 0,
            "recent_listed": s.recent,
            "old_sampled_present": 0,
            "recent_sampled_missing": 0,
            "in_progress": s.active - s.orphaned,
            "unworkable": s.unworkable,
            "pending": s.orphaned,
        }
        for key, want in expected.items():
            if a.get(key) != want:
                out.append(f"after the sweep {key} = {a.get(key)}, expected {want}")
        if self.work.get("requeued") != s.orphaned:
            out.append(f"requeued {self.work.get('requeued')} expired leases, expected {s.orphaned}")
        if self.work.get("trimmed", 0) < s.old:
            out.append(f"trimmed {self.work.get('trimmed')} index entries, expected >= {s.old}")
        return out

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["size"] = asdict(self.size) | {"old": self.size.old, "recent": self.size.recent}
        d["slowest_call_ms"] = self.slowest_call_ms
        d["failures"] = self.failures()
        d["ok"] = not d["failures"]
        return d


# -- building the keyspace ------------------------------------------------------------------------


async def _bounded(coros: Sequence[Awaitable[Any]], limit: int) -> list[Any]:
    sem = asyncio.Semaphore(limit)

    async def one(c: Awaitable[Any]) -> Any:
        async with sem:
            return await c

    return list(await asyncio.gather(*(one(c) for c in coros)))


async def _claim_n(calls: Calls, worker: str, n: int, lease_ms: int) -> list[ClaimedJob]:
    """``n`` claims for ``worker`` (CLAIMS_IN_FLIGHT at a time); only the jobs actually claimed."""
    tag = uuid.uuid4().hex[:8]
    got = await _bounded([calls.claim(worker, f"{tag}-{i}", lease_ms) for i in range(n)], CLAIMS_IN_FLIGHT)
    if any(isinstance(g, NotRegistered) for g in got):
        raise BenchError(f"worker {worker} lost its registration while claiming")
    return [g for g in got if isinstance(g, ClaimedJob)]


async def _complete_chain(calls: Calls, worker: str, held: list[ClaimedJob], tag: str) -> int:
    done, k = 0, 0
    max_lost = defaults.MAX_LOST_LEASES
    while held:
        k += 1
        batch = [
            Completion(j.id, j.attempt, worker, "", NextClaim(f"{tag}{k}-{i}", LONG_LEASE_MS, True, max_lost))
            for i, j in enumerate(held)
        ]
        outcomes = await calls.complete_many(batch)
        done += len(batch)
        held = [o.next_claim for o in outcomes if isinstance(o.next_claim, ClaimedJob)]
    return done


async def _complete_all(calls: Calls, worker: str) -> int:
    """Claim and complete every pending job the worker can run: group commits that claim the next job,
    CHAINS of them in flight (the client encodes one while Redis runs the other)."""
    held = await _claim_n(calls, worker, CHAIN * CHAINS, LONG_LEASE_MS)
    tag = uuid.uuid4().hex[:6]
    parts = [held[i::CHAINS] for i in range(CHAINS)]
    return sum(await asyncio.gather(*(_complete_chain(calls, worker, p, f"{tag}-{n}-") for n, p in enumerate(parts))))


async def _claim_orphans(calls: Calls, n: int) -> list[ClaimedJob]:
    """The dead worker's claims, a chunk at a time, its short registration renewed before each chunk."""
    out: list[ClaimedJob] = []
    for start in range(0, n, CHAIN):
        await _register(calls, DEAD_WORKER, ORPHAN_LEASE_MS)
        out += await _claim_n(calls, DEAD_WORKER, min(CHAIN, n - start), ORPHAN_LEASE_MS)
    return out


async def _register(calls: Calls, worker: str, ttl_ms: int) -> None:
    await calls.register_worker(worker, "bench", [SERVICE], {"services": [SERVICE]}, f"{worker}-wake", ttl_ms)


async def _wait_server_time(calls: Calls, at_ms: int, timeout_s: float = 30.0) -> None:
    """Poll Redis's clock until it reads ``at_ms`` (the cutoff gap)."""
    deadline = time.monotonic() + timeout_s
    while await calls.server_time_ms() < at_ms:
        if time.monotonic() > deadline:
            raise BenchError("Redis's clock did not advance")
        await asyncio.sleep(0.05)


@dataclass(slots=True)
class _Built:
    cutoff_ms: int
    orphan_deadline_ms: int


async def build(calls: Calls, size: ScaleSize, result: ScaleResult, log: Log) -> _Built:
    """The keyspace of the module doc; phase times into ``result.build_s``."""
    t_all = time.perf_counter()

    async def phase(name: str, work: Awaitable[Any]) -> Any:
        t0 = time.perf_counter()
        out = await work
        result.build_s[name] = round(time.perf_counter() - t0, 2)
        log(f"  scale: {name} in {result.build_s[name]:.1f} s")
        return out

    await _register(calls, LIVE_WORKER, LONG_LEASE_MS)
    plain = job_template()
    await phase("submit_old", fill(calls, plain, size.old, "o", log=log))
    await phase("complete_old", _complete_all(calls, LIVE_WORKER))
    cutoff = await calls.server_time_ms()
    await _wait_server_time(calls, cutoff + CUTOFF_GAP_MS)
    await phase("submit_recent", fill(calls, plain, size.recent, "r", log=log))
    await phase("complete_recent", _complete_all(calls, LIVE_WORKER))
    impossible = [
        job_template(requirements={"hardware.gpu_memory_gb": IMPOSSIBLE_GPU_GB + k})
        for k in range(UNWORKABLE_SIGNATURES)
    ]
    await phase("submit_unworkable", fill(calls, lambda i: impossible[i % len(impossible)], size.unworkable, "u"))
    await phase("submit_active", fill(calls, plain, size.active, "a", log=log))
    healthy = await phase("claim_active", _claim_n(calls, LIVE_WORKER, size.active - size.orphaned, LONG_LEASE_MS))
    orphans = await phase("claim_orphaned", _claim_orphans(calls, size.orphaned))
    # Every orphan lease (and the dead worker's registration) ends by then.
    orphan_deadline = await calls.server_time_ms() + ORPHAN_LEASE_MS
    if len(healthy) != size.active - size.orphaned or len(orphans) != size.orphaned:
        raise BenchError(f"claimed {len(healthy)} + {len(orphans)} active jobs, expected {size.active}")
    counts = await calls.count_jobs()
    want = {"completed": size.finished, "in_progress": size.active}
    if any(counts.get(k) != v for k, v in want.items()):
        raise BenchError(f"the keyspace holds {counts}, expected {want}")
    result.build_s["total"] = round(time.perf_counter() - t_all, 2)
    info = await calls.client.info("memory")
    result.used_memory_mb = round(int(info["used_memory"]) / 1e6, 1)
    return _Built(cutoff_ms=cutoff, orphan_deadline_ms=orphan_deadline)


# -- the probe ------------------------------------------------------------------------------------


@contextlib.contextmanager
def ping_probe(port: int, interval_ms: float = PROBE_INTERVAL_MS) -> Iterator[dict[str, Any]]:
    """Run :mod:`emp.bench.ping_probe` in its own process for the block; the dict is filled with its stats."""
    root = str(Path(emp.__file__).resolve().parent.parent)
    argv = [sys.executable, "-m", "emp.bench.ping_probe", "--port", str(port), "--interval-ms", str(interval_ms)]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=root, preexec_fn=die_with_parent)
    stats: dict[str, Any] = {}
    try:
        assert proc.stdout is not None and proc.stdin is not None
        if proc.stdout.readline().strip() != b"ready":
            raise BenchError(f"the ping probe did not start (exit code {proc.wait(timeout=10)})")
        yield stats
        proc.stdin.close()
        line = proc.stdout.readline()
        stats.update(json.loads(line) if line.strip() else {"error": "the probe printed nothing"})
    finally:
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- the sweep ------------------------------------------------------------------------------------


class _SweepCalls(UpkeepCalls):
    """Upkeep calls (no fence: one sweeper) whose retention keeps the cleanup's cutoff at ``cutoff_ms``."""

    def __init__(self, calls: Calls, cutoff_ms: int, now_ms: int) -> None:
        super().__init__(calls, None, max(0, now_ms - cutoff_ms))


async def _slowlog_on(client: RedisClient) -> None:
    await client.config_set("slowlog-max-len", 10_000)
    await client.config_set("slowlog-log-slower-than", SLOWLOG_THRESHOLD_US)
    await client.config_set("latency-monitor-threshold", 10)
    await client.slowlog_reset()
    await client.execute_command("LATENCY", "RESET")


async def _slowlog_read(client: RedisClient) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for item in await client.slowlog_get(10_000):
        command = item.get("command", "")
        if isinstance(command, bytes):
            command = command.decode(errors="replace")
        words = str(command).split()
        out.append({"command": " ".join(words[:2]), "duration_ms": round(int(item["duration"]) / 1000, 3)})
    return sorted(out, key=lambda e: -e["duration_ms"])


def _add(total: dict[str, int], report: UpkeepReport) -> None:
    for k, v in report.counts().items():
        total[k] = total.get(k, 0) + v


async def sweep(calls: Calls, built: _Built, result: ScaleResult, max_s: float, log: Log) -> None:
    """Upkeep passes back to back until one finds nothing to do after every orphan lease has lapsed."""
    t0 = time.perf_counter()
    while True:
        now = await calls.server_time_ms()
        try:
            report = await run_upkeep_pass(
                _SweepCalls(calls, built.cutoff_ms, now), slow=True, grace_s=0, retire_grace_s=0
            )
        except Exception as exc:  # counted, not raised: a BUSY reply is a finding, not a crash of the bench
            if "BUSY" in str(exc):
                result.busy_errors += 1
            result.sweep_errors.append(f"{type(exc).__name__}: {exc}")
            if len(result.sweep_errors) > 20:
                break
            continue
        result.passes += 1
        result.slowest_pass_ms = max(result.slowest_pass_ms, round(report.elapsed_ms, 1))
        _add(result.work, report)
        if not report.did_something and now > built.orphan_deadline_ms:
            break
        if time.perf_counter() - t0 > max_s:
            result.sweep_errors.append(f"the sweep still had work after {max_s:g} s")
            break
    result.sweep_s = round(time.perf_counter() - t0, 2)
    log(f"  scale: {result.passes} upkeep passes in {result.sweep_s:.1f} s: {result.work}")


async def _count_existing(calls: Calls, ids: Sequence[str]) -> int:
    async with calls.client.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.exists(calls.keys.job(job_id))
        return sum(int(x) for x in await pipe.execute())


async def inspect_after(calls: Calls, built: _Built, size: ScaleSize) -> dict[str, int]:
    counts = await calls.count_jobs()
    done = calls.keys.done("completed")
    step_old = max(1, size.old // SAMPLE)
    step_recent = max(1, size.recent // SAMPLE)
    return {
        "old_listed": int(await calls.client.zcount(done, "-inf", built.cutoff_ms)),
        "recent_listed": int(await calls.client.zcount(done, f"({built.cutoff_ms}", "+inf")),
        "old_sampled_present": await _count_existing(calls, [f"o{i}" for i in range(0, size.old, step_old)]),
        "recent_sampled_missing": len(range(0, size.recent, step_recent))
        - await _count_existing(calls, [f"r{i}" for i in range(0, size.recent, step_recent)]),
        "in_progress": counts.get("in_progress", 0),
        "pending": counts.get("pending", 0),
        "unworkable": counts.get("unworkable", 0),
        "completed": counts.get("completed", 0),
        "failed": counts.get("failed", 0),
    }


async def run_scale_async(url: str, port: int, size: ScaleSize, log: Log, max_sweep_s: float = 300.0) -> ScaleResult:
    """Build, sweep under the probe, inspect: on the private Redis at ``url`` (``port`` for the probe)."""
    result = ScaleResult(size)
    client = connect(url, max_connections=CLAIMS_IN_FLIGHT + 8)
    try:
        await library.ensure_loaded(client)
        calls = Calls(client, f"scale-{uuid.uuid4().hex[:6]}")
        log(f"scale: building {size.finished:,} finished, {size.active:,} active, {size.unworkable:,} unworkable jobs")
        built = await build(calls, size, result, log)
        await _slowlog_on(client)
        with ping_probe(port) as probe:
            await sweep(calls, built, result, max_sweep_s, log)
        result.probe = probe
        result.slowlog = await _slowlog_read(client)
        result.latency_latest = [list(row) for row in await client.execute_command("LATENCY", "LATEST")]
        result.after = await inspect_after(calls, built, size)
    finally:
        await client.aclose()
    return result


def run_scale(size: ScaleSize, log: Log | None = None, max_sweep_s: float = 300.0) -> ScaleResult:
    """The whole scenario on a private redis-server (started and stopped here)."""
    say: Log = log or (lambda _msg: None)
    with EmbeddedRedis(None, persist=False) as server:
        say(f"scale: private redis-server at {server.url}")
        return asyncio.run(run_scale_async(server.url, server.port, size, say, max_sweep_s))


def size_of(finished: int | None, active: int | None) -> ScaleSize:
    """The full size, or one scaled from ``--finished`` / ``--active`` (orphaned and unworkable: active / 5)."""
    f = FULL.finished if finished is None else finished
    a = FULL.active if active is None else active
    return ScaleSize(finished=f, active=a, orphaned=a // 5, unworkable=a // 5)


def render_text(doc: dict[str, Any]) -> str:
    """The human summary of :meth:`ScaleResult.as_dict`."""
    size, probe, work, after = doc["size"], doc["probe"], doc["work"], doc["after"]
    slow = ", ".join(f"{e['command']} {e['duration_ms']:.1f} ms" for e in doc["slowlog"][:5]) or "none"
    lines = [
        f"scale: {'OK' if doc['ok'] else 'FAILED'}: {size['finished']:,} finished "
        f"({size['old']:,} past the retention), {size['active']:,} active ({size['orphaned']:,} orphaned), "
        f"{size['unworkable']:,} unworkable jobs",
        f"  built in {doc['build_s'].get('total', 0):.0f} s ({doc['used_memory_mb']:,.0f} MB of Redis): "
        f"{doc['build_s']}",
        f"  {doc['passes']} upkeep passes back to back in {doc['sweep_s']:.1f} s "
        f"(slowest {doc['slowest_pass_ms']:.0f} ms): trimmed {work.get('trimmed')}, requeued {work.get('requeued')}, "
        f"unworkable {work.get('unworkable')}, workers offline {work.get('workers_offline')}, "
        f"signatures retired {work.get('signatures_retired')}",
        f"  PING every {PROBE_INTERVAL_MS:g} ms: {probe.get('samples')} samples, max {probe.get('max_ms')} ms, "
        f"p99 {probe.get('p99_ms')} ms, p50 {probe.get('p50_ms')} ms, BUSY {probe.get('busy', 0) + doc['busy_errors']}",
        f"  SLOWLOG (>= {SLOWLOG_THRESHOLD_US // 1000} ms): {len(doc['slowlog'])} entries; slowest: {slow}",
        f"  after: {after}",
    ]
    lines += [f"  missed: {f}" for f in doc["failures"]]
    return "\n".join(lines)
